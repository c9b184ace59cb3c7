"""What measuring an app's outbound LLM calls costs, at its HTTP client: in-process, no network.

Each client gets a real ``HTTPTransport`` whose connection pool is replaced by one that answers at once
with a wire transcript (tests/llm/transcripts) in chunks, so everything above the socket runs as in
production (the client, its transport, the openai SDK) and the instrumentations patch what they patch
in production: ours ``Client._send_single_request``, opentelemetry-instrumentation-httpx
``HTTPTransport.handle_request``, opentelemetry-instrumentation-openai-v2 the SDK's ``create``.

Cases: a non-streamed chat completion (openai_chat.json); a streamed one with 100 content chunks
(openai_chat_stream_usage.sse, its content events replicated; with the final usage chunk) and with 1,
so that the cost per chunk is told apart from the fixed cost of a call; and calls that are not LLM
calls (GET /v1/models, a POST to /v1/files), which ours lets straight through. Answers carry OpenAI's
usual headers (rate limits included). Every recording variant gets one in-memory metric reader; the peers
run with an SDK MeterProvider and an SDK TracerProvider without processors (spans made, not exported), as
in bench_asgi.py's peer variants. Ours makes no spans for these calls.

AWS Bedrock through boto3 (``bedrock-runtime``): a real client whose HTTP session (botocore's
``URLLib3Session``, the one object below ``Endpoint._send``) is replaced by one that answers at once with
a real urllib3 response read from bytes in memory: Converse's JSON (Content-Length), and ConverseStream's
AWS event-stream frames (tests/llm/bedrock_frames.py) with 100 content frames and with 1, each frame its
own HTTP chunk, as Bedrock sends them. Everything above the socket runs as in production: signing, retries,
botocore's parsing and its event-stream decoder, and what the instrumentations patch (ours
``Endpoint._send``/``_send_request``, opentelemetry-instrumentation-botocore ``BaseClient._make_api_call``).
A ``before-send`` hook would answer above ``Endpoint._send``, where no wire is, and ours (rightly) measures
nothing there.

Every variant is switched on just before its batch and off after it; the variants take turns (in an
order rotated each repeat) so that machine noise hits all alike. "added" is the median over repeats of
(variant - bare of the same client in the same repeat), in microseconds per call; "added per chunk" is
(added to the 100-chunk stream - added to the 1-chunk stream) / 99, the fixed cost of a stream taken out.

    .venv/bin/python benchmarks/bench_client.py [--calls 2000] [--streams 400] [--sdk-calls 1000]
        [--sdk-streams 100] [--boto-calls 1000] [--boto-streams 200] [--repeats 10] [--only raw sdk botocore]

About two minutes on 2 cores with the defaults. The last lines check that each instrumentation recorded one
duration per call it should measure (ours: the LLM calls only), so no row measures a no-op.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import io
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import httpx2  # noqa: E402

from benchmarks.variants import steady  # noqa: E402

TRANSCRIPTS = ROOT / "tests" / "llm" / "transcripts"
BASE = "https://api.openai.com/v1"
CHUNKS = 100  # content chunks in the long stream; the short one has 1
TARGET_CALL_US, TARGET_CHUNK_US = 25.0, 1.0  # issue 27
PROMPT = "Answer from the context below.\n\n" + "word " * 150
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": PROMPT}]
CHAT_REQUEST = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
STREAM_REQUEST = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
                             "stream_options": {"include_usage": True}}).encode()
FILE_UPLOAD = b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n' * 8
HEADERS = [(b"date", b"Mon, 30 Nov 2026 10:00:00 GMT"), (b"content-type", b"application/json"),
           (b"x-request-id", b"req_0123456789abcdef"), (b"openai-organization", b"org-bench"),
           (b"openai-processing-ms", b"312"), (b"openai-version", b"2020-10-01"),
           (b"x-ratelimit-limit-requests", b"10000"), (b"x-ratelimit-limit-tokens", b"30000000"),
           (b"x-ratelimit-remaining-requests", b"9999"), (b"x-ratelimit-remaining-tokens", b"29999000"),
           (b"x-ratelimit-reset-requests", b"6ms"), (b"x-ratelimit-reset-tokens", b"0s"),
           (b"server", b"cloudflare")]
SSE_HEADERS = [(name, b"text/event-stream; charset=utf-8" if name == b"content-type" else value)
               for name, value in HEADERS]


def _stream_chunks(contents: int) -> tuple[bytes, ...]:
    """openai_chat_stream_usage.sse, one event per chunk, with ``contents`` content events."""
    events = [event + b"\n\n" for event in (TRANSCRIPTS / "openai_chat_stream_usage.sse").read_bytes().split(b"\n\n")
              if event.strip()]
    head, content, tail = events[:1], events[1:4], events[4:]  # role; 3 content events; stop, usage, [DONE]
    return (*head, *(content[i % len(content)] for i in range(contents)), *tail)


CHAT = ((TRANSCRIPTS / "openai_chat.json").read_bytes(),)
MODELS = (json.dumps({"object": "list", "data": [{"id": f"model-{i}", "object": "model", "created": 1,
                                                  "owned_by": "system"} for i in range(20)]}).encode(),)
FILE = (json.dumps({"id": "file-abc123", "object": "file", "bytes": len(FILE_UPLOAD), "created_at": 1,
                    "filename": "batch.jsonl", "purpose": "batch"}).encode(),)
BEDROCK_MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
BEDROCK_MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]
BEDROCK_HEADERS = [(b"Date", b"Mon, 30 Nov 2026 10:00:00 GMT"), (b"Content-Type", b"application/json"),
                   (b"x-amzn-RequestId", b"0d1e2f3a-4b5c-4d6e-8f70-123456789abc"), (b"Connection", b"keep-alive")]
BEDROCK_STREAM_HEADERS = [(name, b"application/vnd.amazon.eventstream" if name == b"Content-Type" else value)
                          for name, value in BEDROCK_HEADERS]


# -- the in-process wire ----------------------------------------------------------------------------
class _Answer:
    """What an httpcore pool hands ``HTTPTransport.handle_request``."""

    __slots__ = ("status", "headers", "stream", "extensions")

    def __init__(self, headers: list[tuple[bytes, bytes]], chunks: tuple[bytes, ...]) -> None:
        self.status, self.headers, self.stream, self.extensions = 200, headers, chunks, {}


class _Pool:
    """A connection pool that answers every request at once with the same chunks."""

    def __init__(self, headers: list[tuple[bytes, bytes]], chunks: tuple[bytes, ...]) -> None:
        self.headers, self.chunks = headers, chunks

    def handle_request(self, request: Any) -> _Answer:
        return _Answer(self.headers, self.chunks)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _client(module: Any, headers: list[tuple[bytes, bytes]], chunks: tuple[bytes, ...]) -> Any:
    transport = module.HTTPTransport()
    transport._pool.close()
    transport._pool = _Pool(headers, chunks)
    return module.Client(transport=transport)


# -- botocore's in-process wire ----------------------------------------------------------------------
class _Socket:
    """What ``http.client.HTTPResponse`` reads an answer from: its bytes, in memory."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def _http_bytes(headers: list[tuple[bytes, bytes]], pieces: list[bytes], chunked: bool) -> bytes:
    """An HTTP/1.1 200 answer: ``pieces`` as one HTTP chunk each, or as one Content-Length body."""
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"%s: %s\r\n" % header for header in headers)
    if chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
            b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    body = b"".join(pieces)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class _Session:
    """botocore's ``URLLib3Session`` answering every request at once: a real urllib3 response over the same bytes,
    handed back as its ``send`` does (a body that does not stream read at once)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def send(self, request: Any) -> Any:
        import urllib3
        from botocore.awsrequest import AWSResponse

        answer = http.client.HTTPResponse(_Socket(self.answer), method="POST")  # type: ignore[arg-type]
        answer.begin()
        raw = urllib3.HTTPResponse(body=answer, headers=urllib3.HTTPHeaderDict(answer.msg.items()),
                                   status=answer.status, version=answer.version, reason=answer.reason,
                                   preload_content=False, decode_content=True, original_response=answer,
                                   request_method="POST", request_url=request.url)
        response = AWSResponse(request.url, raw.status, raw.headers, raw)
        if not request.stream_output:
            response.content  # noqa: B018 - as botocore's session: the whole body read now
        return response

    def close(self) -> None:
        pass


def _boto_client(answer: bytes) -> Any:
    import boto3

    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDBENCH",
                          aws_secret_access_key="bench-secret")
    client._endpoint.http_session = _Session(answer)
    return client


def _converse_stream_frames(contents: int) -> list[bytes]:
    """ConverseStream's frames: messageStart, ``contents`` contentBlockDelta, contentBlockStop, messageStop, and
    metadata with the usage."""
    from tests.llm.bedrock_frames import converse_stream_frames

    return converse_stream_frames(contents, {"inputTokens": 180, "outputTokens": contents,
                                             "totalTokens": 180 + contents})


def _botocore_cases(calls: int, streams: int) -> dict[str, tuple[Callable[[], None], int]]:
    from tests.llm.bedrock_frames import CONVERSE_ANSWER

    chat = _boto_client(_http_bytes(BEDROCK_HEADERS, [json.dumps(CONVERSE_ANSWER).encode()], chunked=False))
    long, short = (_boto_client(_http_bytes(BEDROCK_STREAM_HEADERS, _converse_stream_frames(n), chunked=True))
                   for n in (CHUNKS, 1))

    def converse() -> None:
        chat.converse(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)

    def stream(client: Any) -> Callable[[], None]:
        def run() -> None:
            for _ in client.converse_stream(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)["stream"]:
                pass
        return run

    return {"chat": (converse, calls), "stream": (stream(long), streams), "stream1": (stream(short), calls)}


# -- the cases: (name, make(module) -> call) --------------------------------------------------------
def _raw_cases(module: Any, calls: int, streams: int) -> dict[str, tuple[Callable[[], None], int]]:
    chat = _client(module, HEADERS, CHAT)
    long, short = _client(module, SSE_HEADERS, _stream_chunks(CHUNKS)), _client(module, SSE_HEADERS, _stream_chunks(1))
    models, files = _client(module, HEADERS, MODELS), _client(module, HEADERS, FILE)
    url = f"{BASE}/chat/completions"

    def call_chat() -> None:
        chat.post(url, content=CHAT_REQUEST, headers={"content-type": "application/json"})

    def stream(client: Any) -> Callable[[], None]:
        def run() -> None:
            with client.stream("POST", url, content=STREAM_REQUEST, headers={"content-type": "application/json"}) \
                    as answer:
                for _ in answer.iter_raw():
                    pass
        return run

    def list_models() -> None:
        models.get(f"{BASE}/models")

    def upload() -> None:
        files.post(f"{BASE}/files", content=FILE_UPLOAD, headers={"content-type": "application/jsonl"})

    return {"chat": (call_chat, calls), "stream": (stream(long), streams), "stream1": (stream(short), calls),
            "models": (list_models, calls), "files": (upload, calls)}


def _sdk_cases(calls: int, streams: int) -> dict[str, tuple[Callable[[], None], int]]:
    import openai

    def sdk(headers: list[tuple[bytes, bytes]], chunks: tuple[bytes, ...]) -> Any:
        return openai.OpenAI(api_key="sk-bench", base_url=BASE, http_client=_client(httpx2, headers, chunks))

    chat = sdk(HEADERS, CHAT)
    long, short = sdk(SSE_HEADERS, _stream_chunks(CHUNKS)), sdk(SSE_HEADERS, _stream_chunks(1))

    def call_chat() -> None:
        chat.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    def stream(client: Any) -> Callable[[], None]:
        def run() -> None:
            for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                    stream_options={"include_usage": True}):
                pass
        return run

    return {"chat": (call_chat, calls), "stream": (stream(long), streams), "stream1": (stream(short), calls)}


# -- the variants: switched on before their batch, off after it --------------------------------------
def _reader_and_provider() -> tuple[Any, Any]:
    """An SDK MeterProvider with one in-memory reader (as bench_asgi.py's peers), and the reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    return reader, MeterProvider(metric_readers=[reader], shutdown_on_exit=False)


def _recorded(reader: Any, names: tuple[str, ...]) -> int:
    """How many calls the histograms ``names`` counted: the proof that a variant measured what it ran."""
    data = reader.get_metrics_data()
    return sum(point.count for resource in (data.resource_metrics if data else ()) for scope in resource.scope_metrics
               for metric in scope.metrics if metric.name in names for point in metric.data.data_points)


class Variant:
    def __init__(self, name: str, group: str, on: Callable[[], Any] = lambda: None,
                 off: Callable[[], Any] = lambda: None, recorded: Callable[[], int] | None = None,
                 measures: tuple[str, ...] = ()) -> None:
        self.name, self.group, self.on, self.off, self.recorded = name, group, on, off, recorded
        self.measures = measures  # the cases it is meant to record; all others go through unmeasured
        self.made: dict[str, int] = {}  # calls made with it on, by case


LLM_CASES = ("chat", "stream", "stream1")
GEN_AI_DURATION = ("gen_ai.client.operation.duration",)


def _ours(name: str, group: str) -> Variant:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_llm_metrics import Registry, Telemetry, load_settings

    try:  # the instrumentors put the libraries' own methods back (issue 26); before them, the hook did
        from otel_llm_metrics.client.instrumentors import uninstall
    except ImportError:
        from otel_llm_metrics.client.hook import uninstall  # type: ignore[attr-defined,no-redef]

    reader = InMemoryMetricReader()
    telemetry = Telemetry(load_settings(environ={}, metrics_exporters=("none",)), Registry(), [reader])
    steady(telemetry)
    return Variant(name, group, telemetry.measure_upstream_calls, uninstall,
                   lambda: _recorded(reader, GEN_AI_DURATION), LLM_CASES)


def _instrumented(name: str, group: str, instrumentor: Any, metrics: tuple[str, ...],
                  measures: tuple[str, ...]) -> Variant:
    """An OTel instrumentor with an SDK MeterProvider and an SDK TracerProvider (spans made, not exported)."""
    from opentelemetry.sdk.trace import TracerProvider

    (reader, meter_provider), tracer_provider = _reader_and_provider(), TracerProvider()
    return Variant(name, group,
                   lambda: instrumentor.instrument(meter_provider=meter_provider, tracer_provider=tracer_provider),
                   instrumentor.uninstrument, lambda: _recorded(reader, metrics), measures)


def _raw_variants() -> list[Variant]:
    try:
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
    except ImportError:
        print("(opentelemetry-instrumentation-httpx is not installed: its rows are left out)\n")
        return [Variant("bare", "httpx2"), _ours("otel_llm_metrics", "httpx2"),
                Variant("bare", "httpx"), _ours("otel_llm_metrics", "httpx")]
    http = ("http.client.duration", "http.client.request.duration")
    every = (*LLM_CASES, "models", "files")
    return [Variant("bare", "httpx2"), _ours("otel_llm_metrics", "httpx2"),
            _instrumented("otel-httpx2(metrics+tracer)", "httpx2", HTTPX2ClientInstrumentor(), http, every),
            Variant("bare", "httpx"), _ours("otel_llm_metrics", "httpx"),
            _instrumented("otel-httpx(metrics+tracer)", "httpx", HTTPXClientInstrumentor(), http, every)]


def _with_peer(library: str, label: str, package: str, instrumentor: Callable[[], Any]) -> list[Variant]:
    """Bare, ours, and the peer ``package`` (its GenAI metrics and the SDK tracer) where it is installed."""
    variants = [Variant("bare", library), _ours("otel_llm_metrics", library)]
    try:
        peer = instrumentor()
    except ImportError:
        print(f"\n({package} is not installed: its row is left out)")
        return variants
    return [*variants, _instrumented(label, library, peer, GEN_AI_DURATION, LLM_CASES)]


def _botocore_variants() -> list[Variant]:
    def instrumentor() -> Any:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
        return BotocoreInstrumentor()
    return _with_peer("botocore", "otel-botocore(metrics+tracer)", "opentelemetry-instrumentation-botocore",
                      instrumentor)


def _sdk_variants() -> list[Variant]:
    def instrumentor() -> Any:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        return OpenAIInstrumentor()
    return _with_peer("openai", "openai-v2(metrics+tracer)", "opentelemetry-instrumentation-openai-v2", instrumentor)


# -- measuring --------------------------------------------------------------------------------------
def _batch(variant: Variant, case: str, call: Callable[[], None], n: int) -> float:
    """Seconds per call for ``n`` calls with ``variant`` switched on."""
    variant.made[case] = variant.made.get(case, 0) + n
    variant.on()
    try:
        gc.collect()
        started = perf_counter()
        for _ in range(n):
            call()
        return (perf_counter() - started) / n
    finally:
        variant.off()


def _measure(variants: list[Variant], cases: dict[str, dict[str, tuple[Callable[[], None], int]]],
             repeats: int) -> dict[tuple[int, str], list[float]]:
    """{(variant index, case): seconds per call in each repeat}; ``cases`` by variant group."""
    for variant in variants:  # warm-up: imports, caches, first series
        for case, (call, _) in cases[variant.group].items():
            _batch(variant, case, call, 20)
    samples: dict[tuple[int, str], list[float]] = {}
    order = list(range(len(variants)))
    for repeat in range(repeats):
        rotated = order[repeat % len(order):] + order[:repeat % len(order)]
        for case in next(iter(cases.values())):
            for index in rotated:
                variant = variants[index]
                call, n = cases[variant.group][case]
                samples.setdefault((index, case), []).append(_batch(variant, case, call, max(n // repeats, 5)))
    return samples


class Results:
    def __init__(self, variants: list[Variant], samples: dict[tuple[int, str], list[float]]) -> None:
        self.variants, self.samples = variants, samples
        self.bare = {v.group: i for i, v in enumerate(variants) if v.name == "bare"}

    def us(self, index: int, case: str) -> float:
        return statistics.median(self.samples[(index, case)]) * 1e6

    def _diffs(self, index: int, case: str) -> list[float]:
        base = self.samples[(self.bare[self.variants[index].group], case)]
        return [(a - b) * 1e6 for a, b in zip(self.samples[(index, case)], base, strict=True)]

    def added(self, index: int, case: str) -> float:
        """Median over repeats of the difference to the same client's bare batch of that repeat."""
        return statistics.median(self._diffs(index, case))

    def per_chunk(self, index: int) -> float:
        long, short = self._diffs(index, "stream"), self._diffs(index, "stream1")
        return statistics.median((a - b) / (CHUNKS - 1) for a, b in zip(long, short, strict=True))


def _raw_tables(results: Results, calls: int, streams: int, repeats: int) -> None:
    print(f"## At the HTTP client (sync), medians of {repeats} interleaved repeats "
          f"({calls} calls and {streams} {CHUNKS}-chunk streams per variant and case)\n")
    print(f"| client | variant | chat call (us) | added | {CHUNKS}-chunk stream (us) | added | 1-chunk stream added "
          "| added per chunk |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for i, v in enumerate(results.variants):
        print(f"| {v.group} | {v.name} | {results.us(i, 'chat'):.1f} | {results.added(i, 'chat'):+.1f} | "
              f"{results.us(i, 'stream'):.0f} | {results.added(i, 'stream'):+.1f} | "
              f"{results.added(i, 'stream1'):+.1f} | {results.per_chunk(i):+.3f} |")
    print("\nCalls that are not LLM calls\n")
    print("| client | variant | GET /v1/models (us) | added | POST /v1/files (us) | added |")
    print("|---|---|---:|---:|---:|---:|")
    for i, v in enumerate(results.variants):
        print(f"| {v.group} | {v.name} | {results.us(i, 'models'):.1f} | {results.added(i, 'models'):+.1f} | "
              f"{results.us(i, 'files'):.1f} | {results.added(i, 'files'):+.1f} |")


def _sdk_table(results: Results, calls: int, streams: int, repeats: int) -> None:
    print(f"\n## Through the openai SDK (sync, over httpx2), medians of {repeats} interleaved repeats "
          f"({calls} calls and {streams} {CHUNKS}-chunk streams per variant and case)\n")
    print(f"| variant | chat.completions.create (us) | added | {CHUNKS}-chunk stream (us) | added "
          "| 1-chunk stream added | added per chunk |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for i, v in enumerate(results.variants):
        print(f"| {v.name} | {results.us(i, 'chat'):.0f} | {results.added(i, 'chat'):+.1f} | "
              f"{results.us(i, 'stream'):.0f} | {results.added(i, 'stream'):+.1f} | "
              f"{results.added(i, 'stream1'):+.1f} | {results.per_chunk(i):+.3f} |")


def _botocore_table(results: Results, calls: int, streams: int, repeats: int) -> None:
    print(f"\n## AWS Bedrock through boto3 (bedrock-runtime, sync), medians of {repeats} interleaved repeats "
          f"({calls} calls and {streams} {CHUNKS}-frame streams per variant and case)\n")
    print(f"| variant | converse (us) | added | {CHUNKS}-frame converse_stream (us) | added "
          "| 1-frame converse_stream added | added per frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for i, v in enumerate(results.variants):
        print(f"| {v.name} | {results.us(i, 'chat'):.0f} | {results.added(i, 'chat'):+.1f} | "
              f"{results.us(i, 'stream'):.0f} | {results.added(i, 'stream'):+.1f} | "
              f"{results.added(i, 'stream1'):+.1f} | {results.per_chunk(i):+.3f} |")


def _check(variants: list[Variant]) -> None:
    """Each variant recorded one duration per call it is meant to measure, and none for the others."""
    parts = []
    for v in variants:
        if v.recorded is None:
            continue
        expected, got = sum(n for case, n in v.made.items() if case in v.measures), v.recorded()
        parts.append(f"{v.name} ({v.group}) {got:,}/{expected:,}" + ("" if got == expected else " MISMATCH"))
    print("\nDurations recorded / calls each variant should measure: " + "; ".join(parts))


def _verdict(raw: Results | None, sdk: Results | None, boto: Results | None = None) -> None:
    checks = []
    for label, results in (("", raw), ("openai SDK, ", sdk), ("boto3, ", boto)):
        for i, v in enumerate(results.variants if results else ()):
            if v.name == "otel_llm_metrics":
                call, short, chunk = results.added(i, "chat"), results.added(i, "stream1"), results.per_chunk(i)
                checks.append((f"{label}{v.group}" if label else v.group, call, short, chunk))
    print(f"\nTargets for otel_llm_metrics: at most {TARGET_CALL_US:g} us added per LLM call (plain and 1-chunk "
          f"stream), at most {TARGET_CHUNK_US:g} us per streamed chunk (an event-stream frame for boto3).")
    for where, call, short, chunk in checks:
        met = call <= TARGET_CALL_US and short <= TARGET_CALL_US and chunk <= TARGET_CHUNK_US
        print(f"- {where}: {call:+.1f} us per call, {short:+.1f} us per 1-chunk stream, {chunk:+.3f} us per chunk: "
              f"{'met' if met else 'NOT met'}")
    if sdk is not None:
        print("  (the SDK's own cost, milliseconds per call and tens of them per 100-chunk stream, makes its rows "
              "far noisier; the HTTP-client rows are the measure)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="HTTP client: calls per variant and case")
    parser.add_argument("--streams", type=int, default=400, help=f"HTTP client: {CHUNKS}-chunk streams per variant")
    parser.add_argument("--sdk-calls", type=int, default=1000, help="openai SDK: calls per variant and case")
    parser.add_argument("--sdk-streams", type=int, default=100, help=f"openai SDK: {CHUNKS}-chunk streams per variant")
    parser.add_argument("--boto-calls", type=int, default=1000, help="boto3: calls per variant and case")
    parser.add_argument("--boto-streams", type=int, default=200, help=f"boto3: {CHUNKS}-frame streams per variant")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", nargs="*", choices=("raw", "sdk", "botocore"), default=("raw", "sdk", "botocore"))
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (time.process_time), which other jobs on a shared machine "
                             "disturb less than wall time")
    args = parser.parse_args()
    if args.clock == "cpu":
        global perf_counter  # noqa: PLW0603 - the clock _batch reads
        perf_counter = process_time
    raw = sdk = boto = None
    started = perf_counter()
    if "raw" in args.only:
        variants = _raw_variants()
        cases = {group: _raw_cases(module, args.calls, args.streams)
                 for group, module in (("httpx2", httpx2), ("httpx", httpx))}
        raw = Results(variants, _measure(variants, cases, args.repeats))
        _raw_tables(raw, args.calls, args.streams, args.repeats)
        _check(variants)
    if "sdk" in args.only:
        variants = _sdk_variants()
        sdk = Results(variants, _measure(variants, {"openai": _sdk_cases(args.sdk_calls, args.sdk_streams)},
                                         args.repeats))
        _sdk_table(sdk, args.sdk_calls, args.sdk_streams, args.repeats)
        _check(variants)
    if "botocore" in args.only:
        variants = _botocore_variants()
        boto = Results(variants, _measure(variants, {"botocore": _botocore_cases(args.boto_calls, args.boto_streams)},
                                          args.repeats))
        _botocore_table(boto, args.boto_calls, args.boto_streams, args.repeats)
        _check(variants)
    _verdict(raw, sdk, boto)
    print(f"\n(measured in {perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
