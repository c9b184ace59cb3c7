"""What LLM parsing adds: the same streams with ``llm_parsing`` on and off, in the same run.

Cases: a 100-chunk OpenAI SSE chat stream (with a final usage chunk), a 100-line Ollama NDJSON
stream and a 100-event Gemini stream (SSE, and the indented JSON array of ``streamGenerateContent``
without ``alt=sse``; each event repeats the usage so far), plus their 1-chunk versions so that the
per-chunk cost is told apart from the fixed per-request cost (request-model search, parser set-up,
the GenAI record at the end). The OpenAI and Ollama streams are also sent under the media type
hand-written proxies use (text/plain, application/json), and the Gemini array under its own
(application/json): there the format is recognised from the first bytes.

    .venv/bin/python benchmarks/bench_llm.py [--requests 5000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
from pathlib import Path
from time import perf_counter, process_time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from benchmarks.variants import steady  # noqa: E402
from otel_llm_metrics import Registry, Telemetry, load_settings  # noqa: E402

REQUEST = json.dumps({"messages": [{"role": "user", "content": "word " * 150}], "model": "bench-model",
                      "stream": True}).encode()


def _openai_events(n: int) -> list[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "bench-model"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
              for i in range(n)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 150, "completion_tokens": n,
                                                    "total_tokens": 150 + n}})
    return [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


BULK_BYTES, BULK_CHUNK = 50 * 2**20, 64 * 1024


def _bulk(n: int) -> list[bytes]:
    """A 50 MB SSE body in 64 KB body messages (a long generation relayed in big writes)."""
    event = _openai_events(1)[0]
    body = event * (BULK_BYTES // len(event))
    return [body[i:i + BULK_CHUNK] for i in range(0, len(body), BULK_CHUNK)]


def _ollama_lines(n: int) -> list[bytes]:
    lines = [{"model": "bench-model", "created_at": "2026-11-22T00:00:00Z",
              "message": {"role": "assistant", "content": f"tok{i} "}, "done": False} for i in range(n)]
    lines.append({"model": "bench-model", "created_at": "2026-11-22T00:00:00Z",
                  "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                  "prompt_eval_count": 150, "eval_count": n})
    return [json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines]


def _gemini_event(i: int, n: int) -> dict:
    usage = {"promptTokenCount": 150, "totalTokenCount": 150 + i + 1, "candidatesTokenCount": i + 1,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 150}]}
    candidate = {"content": {"parts": [{"text": f"tok{i} "}], "role": "model"}, "index": 0}
    if i == n - 1:
        candidate["finishReason"] = "STOP"
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "bench-model", "responseId": "r1"}


def _gemini_events(n: int) -> list[bytes]:
    """Gemini's SSE (alt=sse): one data line per event, its spacing, CRLF framing."""
    return [b"data: " + json.dumps(_gemini_event(i, n), separators=(",", ": ")).encode() + b"\r\n\r\n"
            for i in range(n)]


def _gemini_array(n: int) -> list[bytes]:
    """streamGenerateContent without alt=sse: an indented JSON array, one element per body message."""
    return [(b"[" if i == 0 else b"\n,\r\n") + json.dumps(_gemini_event(i, n), indent=2).encode()
            + (b"\n]" if i == n - 1 else b"") for i in range(n)]


GEMINI_PATH = "/v1beta/models/bench-model:streamGenerateContent"
PATHS = {"/v1/chat/completions": "OpenAI SSE, 100 chunks + usage",
         "/api/chat": "Ollama NDJSON, 100 lines + final",
         "/plain/v1/chat/completions": "OpenAI SSE sent as text/plain",
         "/plain/api/chat": "Ollama NDJSON sent as application/json",
         GEMINI_PATH: "Gemini SSE, 100 events",
         "/array" + GEMINI_PATH: "Gemini JSON array, 100 elements"}


def make_app() -> Starlette:
    cases = {"/v1/chat/completions": ("text/event-stream", _openai_events),
             "/bulk/v1/chat/completions": ("text/event-stream", _bulk),
             "/api/chat": ("application/x-ndjson", _ollama_lines),
             # what hand-written proxies send: the format is then recognised from the bytes
             "/plain/v1/chat/completions": ("text/plain", _openai_events),
             "/plain/api/chat": ("application/json", _ollama_lines),
             GEMINI_PATH: ("text/event-stream", _gemini_events),
             "/array" + GEMINI_PATH: ("application/json", _gemini_array)}
    prepared = {(path, n): make(n) for path, (_, make) in cases.items() for n in (1, 100)}

    async def endpoint(request):
        await request.body()
        n = int(request.query_params.get("n", "100"))
        media_type = cases[request.url.path][0]
        chunks = prepared[(request.url.path, n)]

        async def body():
            for chunk in chunks:
                yield chunk
        return StreamingResponse(body(), media_type=media_type)

    return Starlette(routes=[Route(path, endpoint, methods=["POST"]) for path in cases])


async def _drive(app, path: str, n: int, count: int) -> float:
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": REQUEST, "more_body": False}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    started = perf_counter()
    for _ in range(count):
        sent = False
        await app({"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
                   "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                   "query_string": f"n={n}".encode(), "headers": [(b"content-type", b"application/json")],
                   "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}, receive, send)
    return (perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (time.process_time), which other jobs on a shared machine "
                             "disturb less than wall time")
    args = parser.parse_args()
    if args.clock == "cpu":
        global perf_counter  # noqa: PLW0603 - the clock _drive reads
        perf_counter = process_time
    apps = {}
    for parsing in (False, True):
        settings = load_settings(environ={}, metrics_exporters=("none",), llm_parsing=parsing)
        telemetry = Telemetry(settings, Registry())
        steady(telemetry)
        apps[parsing] = telemetry.instrument(make_app())
    per_batch = max(args.requests // args.repeats, 20)

    async def measure() -> dict:
        samples: dict = {}
        for app in apps.values():
            for path in PATHS:
                await _drive(app, path, 100, 50)
        for _ in range(args.repeats):
            for path in PATHS:
                for n in (1, 100):
                    for parsing, app in apps.items():
                        gc.collect()
                        count = per_batch if n == 1 else max(per_batch // 10, 20)
                        samples.setdefault((path, n, parsing), []).append(await _drive(app, path, n, count))
        return {key: statistics.median(values) for key, values in samples.items()}

    result = asyncio.run(measure())

    async def bulk() -> dict[bool, float]:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(3):
            for parsing, app in apps.items():
                gc.collect()
                times[parsing].append(await _drive(app, "/bulk/v1/chat/completions", 1, 1))
        return {parsing: min(values) for parsing, values in times.items()}

    bulk_times = asyncio.run(bulk())
    print(f"LLM parsing on vs off, in-process, medians of {args.repeats} interleaved repeats\n")
    print("| stream | parsing off (us) | parsing on (us) | added per request (us) | fixed per request (us) "
          "| per chunk (us) |")
    print("|---|---:|---:|---:|---:|---:|")
    for path, name in PATHS.items():
        off, on = result[(path, 100, False)] * 1e6, result[(path, 100, True)] * 1e6
        fixed = (result[(path, 1, True)] - result[(path, 1, False)]) * 1e6
        per_chunk = ((on - off) - fixed) / 99
        print(f"| {name} | {off:.0f} | {on:.0f} | {on - off:+.1f} | {fixed:+.1f} | {per_chunk:+.3f} |")
    off, on = bulk_times[False], bulk_times[True]
    print(f"\nBulk: one {BULK_BYTES // 2**20} MB SSE body in {BULK_CHUNK // 1024} KB messages, best of 3: "
          f"{off:.3f} s with parsing off, {on:.3f} s on ({on / off:.1f}x)")


if __name__ == "__main__":
    main()
