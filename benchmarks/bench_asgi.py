"""In-process ASGI benchmark: the cost each instrumentation adds per request and per stream.

Drives each variant's ASGI callable directly (no sockets), 20,000 requests per variant and case,
in interleaved repeats so that machine noise hits every variant alike; reports medians and the
difference to the bare app measured in the same run.

Then the served exchanges, bare against ours in the same interleaved run: a plain JSON POST (the
middleware's base cost), a chat completion (JSON, and SSE with 10 chunks and usage), and an MCP
``tools/call`` answered as JSON and as SSE (issue 29: reading an MCP operation should cost no more
than reading a served chat completion). ``--exchanges 0`` leaves them out.

    .venv/bin/python benchmarks/bench_asgi.py [--requests 20000] [--repeats 10] [--exchanges 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.variants import CHUNKS, VARIANTS, ours  # noqa: E402


def _scope(path: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [(b"host", b"bench"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def _drive(app, path: str, n: int) -> float:
    """Seconds per request for ``n`` sequential requests."""
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive():
        return request

    async def send(message):
        pass

    started = perf_counter()
    for _ in range(n):
        await app(_scope(path), receive, send)
    flush = getattr(app, "flush", None)
    if flush is not None:  # variants that export spans: the export of this batch is part of its cost
        flush()
    return (perf_counter() - started) / n


async def _measure(apps: dict, path: str, per_batch: int, repeats: int) -> dict[str, float]:
    for app in apps.values():  # warm-up: imports, caches, first series
        await _drive(app, path, 200)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(repeats):
        for name, app in apps.items():
            gc.collect()
            samples[name].append(await _drive(app, path, per_batch))
    return {name: statistics.median(values) for name, values in samples.items()}


# -- served exchanges: LLM and MCP, bare against ours ---------------------------------------------------------------
CHAT_REQUEST = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello " * 8}]},
                          separators=(",", ":")).encode()
CHAT_ANSWER = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28}}, separators=(",", ":")).encode()
STREAM_CHUNKS = 10
WARM_UP = 200  # exchanges per case and app before the measured repeats


def _chat_events() -> list[bytes]:
    """An OpenAI chat stream: content deltas, the finish, a usage chunk and [DONE], one body message each."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
              for i in range(STREAM_CHUNKS)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 19, "completion_tokens": STREAM_CHUNKS,
                                                    "total_tokens": 19 + STREAM_CHUNKS}})
    return [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


# A tools/call as the mcp SDK's client sends it, and its answer as the SDK's server writes it (JSON, or one SSE event)
MCP_REQUEST = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": "search_docs", "arguments": {"query": "rate limits", "limit": 5}}},
                         separators=(",", ":")).encode()
MCP_ANSWER = json.dumps({"jsonrpc": "2.0", "id": 7, "result": {
    "content": [{"type": "text", "text": "5 documents about rate limits: " + "doc " * 20}], "isError": False}},
    separators=(",", ":")).encode()
MCP_HEADERS = [(b"content-type", b"application/json"), (b"accept", b"application/json, text/event-stream"),
               (b"mcp-session-id", b"8c6d2c4e0f6a4b0e9d1f3a5b7c9e1d2f"), (b"mcp-protocol-version", b"2025-11-25")]
JSON_HEADERS = [(b"content-type", b"application/json")]
# case: (label, path, request headers, request body)
EXCHANGES = {
    "post": ("plain JSON POST (neither LLM nor MCP)", "/api/items", JSON_HEADERS, b'{"name":"widget","size":3}'),
    "chat": ("chat completion, JSON answer", "/v1/chat/completions", JSON_HEADERS, CHAT_REQUEST),
    "chat_stream": (f"chat completion, SSE ({STREAM_CHUNKS} chunks + usage)", "/v1/chat/completions",
                    JSON_HEADERS, CHAT_REQUEST[:-1] + b',"stream":true}'),
    "mcp_json": ("MCP tools/call, JSON answer", "/mcp/json", MCP_HEADERS, MCP_REQUEST),
    "mcp_sse": ("MCP tools/call, SSE answer", "/mcp/sse", MCP_HEADERS, MCP_REQUEST),
}


def exchange_app() -> object:
    """The smallest endpoints that answer like an LLM API and an MCP server: the app's own cost stays small, so
    what an instrumentation adds stands out."""
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    async def items(request):
        await request.body()
        return Response(b'{"id":1,"name":"widget"}', media_type="application/json")

    async def chat(request):
        if b'"stream":true' not in await request.body():
            return Response(CHAT_ANSWER, media_type="application/json")

        async def events():
            for event in _chat_events():
                yield event
        return StreamingResponse(events(), media_type="text/event-stream")

    async def mcp_json(request):
        await request.body()
        return Response(MCP_ANSWER, media_type="application/json")

    async def mcp_sse(request):
        await request.body()

        async def events():
            yield b"event: message\r\ndata: " + MCP_ANSWER + b"\r\n\r\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/api/items", items, methods=["POST"]),
                             Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/mcp/json", mcp_json, methods=["POST"]),
                             Route("/mcp/sse", mcp_sse, methods=["POST"])])


def ours_exchanges() -> tuple[object, object]:
    """The exchange app with ours, set up as every other ours row; and its reader, to check what was recorded."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    return ours(app=exchange_app(), reader=reader), reader


async def _drive_exchange(app, case: str, n: int) -> float:
    """Seconds per exchange for ``n`` sequential POSTs of ``case``."""
    _, path, headers, body = EXCHANGES[case]
    scope = {**_scope(path), "method": "POST",
             "headers": [(b"host", b"bench"), (b"content-length", str(len(body)).encode()), *headers]}
    request = {"type": "http.request", "body": body, "more_body": False}
    disconnect = {"type": "http.disconnect"}

    async def send(message):
        pass

    started = perf_counter()
    for _ in range(n):
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return disconnect
            sent = True
            return request

        await app(dict(scope), receive, send)
    return (perf_counter() - started) / n


async def _measure_exchanges(apps: dict, per_batch: int, repeats: int) -> dict[str, dict[str, float]]:
    """Medians per case and app; the cases and apps interleaved within each repeat."""
    for app in apps.values():
        for case in EXCHANGES:
            await _drive_exchange(app, case, WARM_UP)
    samples: dict[str, dict[str, list[float]]] = {case: {name: [] for name in apps} for case in EXCHANGES}
    for _ in range(repeats):
        for case in EXCHANGES:
            for name, app in apps.items():
                gc.collect()
                samples[case][name].append(await _drive_exchange(app, case, per_batch))
    return {case: {name: statistics.median(values) for name, values in by_app.items()}
            for case, by_app in samples.items()}


def _recorded(reader) -> dict[str, int]:
    """How many MCP operations and chat completions ours recorded: a row that measured nothing would lie."""
    counts = {"mcp.server.operation.duration": 0, "gen_ai.server.request.duration": 0}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in counts:
                    counts[metric.name] += sum(point.count for point in metric.data.data_points)
    return counts


def exchanges(total: int, repeats: int) -> None:
    measured, reader = ours_exchanges()
    per_batch = max(total // repeats, 50)
    medians = asyncio.run(_measure_exchanges({"bare": exchange_app(), "ours": measured}, per_batch, repeats))
    recorded = _recorded(reader)
    each = WARM_UP + repeats * per_batch  # exchanges of one case driven through ours
    assert recorded == {"mcp.server.operation.duration": 2 * each, "gen_ai.server.request.duration": 2 * each}, \
        f"ours did not record every MCP operation and chat completion it served ({2 * each} each): {recorded}"
    print(f"\nServed exchanges, bare against otel_llm_metrics, medians of {repeats} interleaved repeats ({total} per "
          f"case and app; all {2 * each} MCP operations and chat completions recorded)\n")
    print(exchange_table(medians))


def exchange_table(medians: dict[str, dict[str, float]]) -> str:
    """The rows (microseconds; reading = added minus the plain POST's added, the middleware's base cost), then issue
    29's bound: each MCP answer read for no more than the JSON chat completion (the cheaper served one)."""
    added = {case: (m["ours"] - m["bare"]) * 1e6 for case, m in medians.items()}
    lines = ["| exchange | bare (us) | otel_llm_metrics (us) | added | reading |", "|---|---:|---:|---:|---:|"]
    for case, (label, *_) in EXCHANGES.items():
        m = medians[case]
        lines.append(f"| {label} | {m['bare'] * 1e6:.1f} | {m['ours'] * 1e6:.1f} | {added[case]:+.1f} | "
                     f"{added[case] - added['post']:+.1f} |")
    chat = added["chat"] - added["post"]
    lines.append("\nIssue 29's bound, an MCP operation costs no more to read than a served chat completion "
                 f"(JSON, {chat:+.1f} us):")
    for case in ("mcp_json", "mcp_sse"):
        reading = added[case] - added["post"]
        lines.append(f"- {EXCHANGES[case][0]}: {reading:+.1f} us, "
                     + ("holds" if reading <= chat else f"does NOT hold ({reading - chat:+.1f} us over)"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000, help="per variant and case")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--exchanges", type=int, default=20_000,
                        help="served LLM and MCP exchanges per case and app, bare against ours (0: none)")
    args = parser.parse_args()
    names = [n for n in VARIANTS if args.only is None or n in args.only or n == "bare"]
    sink = _start_sink() if any("otlp" in name for name in names) else None
    apps = {name: VARIANTS[name]() for name in names}
    per_batch = args.requests // args.repeats
    small = asyncio.run(_measure(apps, "/small", per_batch, args.repeats))
    stream = asyncio.run(_measure(apps, "/stream", max(per_batch // 10, 50), args.repeats))
    stream1 = asyncio.run(_measure(apps, "/stream1", per_batch, args.repeats))
    print(f"In-process ASGI, medians of {args.repeats} interleaved repeats "
          f"({args.requests} small requests and {args.requests // 10} {CHUNKS}-chunk streams per variant)\n")
    print(f"| variant | small request (us) | added | {CHUNKS}-chunk stream (us) | added | added per chunk |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        s, t = small[name] * 1e6, stream[name] * 1e6
        ds, dt = s - small["bare"] * 1e6, t - stream["bare"] * 1e6
        d1 = (stream1[name] - stream1["bare"]) * 1e6
        per_chunk = (dt - d1) / (CHUNKS - 1)  # the 1-chunk stream carries the fixed cost of a stream
        print(f"| {name} | {s:.1f} | {ds:+.1f} | {t:.0f} | {dt:+.1f} | {per_chunk:+.3f} |")
    if sink is not None:
        received = int(urllib.request.urlopen(f"{os.environ['BENCH_OTLP_SINK']}/count").read())
        print(f"\nThe local OTLP sink received {received} spans (ours: one per request; the peer: more).")
        sink.kill()
    if args.exchanges:
        exchanges(args.exchanges, args.repeats)


def _start_sink() -> subprocess.Popen:
    """benchmarks/otlp_sink.py on a free port, in its own process; its URL in BENCH_OTLP_SINK."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen([sys.executable, str(Path(__file__).parent / "otlp_sink.py"), str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    os.environ["BENCH_OTLP_SINK"] = f"http://127.0.0.1:{port}"
    return sink


if __name__ == "__main__":
    main()
