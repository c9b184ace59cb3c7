"""FastAPI 0.16x's native spans when nobody hears them: CPU per request, in process, one request at a time.

The SDK's configuration sets a tracer provider even with ``OTEL_TRACES_EXPORTER=none``; FastAPI then makes a server
span and operation spans for every request, and with no span processor they are built, ended and dropped. Under
ours with tracing off, FastAPI keeps its spans (they put the caller's context in place) on a provider whose spans
are hollow while no processor listens (``otel_llm_metrics.unheard_spans``). Three variants, each in a fresh process,
alternated over the repeats; the app is a POST endpoint validating a small JSON body, driven through its ASGI
callable (no server, no socket), so the figure is the spans' cost and FastAPI's own.

    .venv/bin/python benchmarks/bench_fastapi_spans.py [--requests 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "bare (no tracer provider)": "bare",
    "SDK tracer provider, no processor": "sdk",
    "same, under ours (hollow spans)": "hollow",
}


class Question(BaseModel):  # at module level: FastAPI resolves the (string) annotation here
    question: str


def _one_variant(mode: str, requests: int) -> float:
    """CPU microseconds per request of a FastAPI app in this process, set up as ``mode`` says."""
    from fastapi import FastAPI
    from opentelemetry import trace

    if mode != "bare":
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())

    app = FastAPI()

    @app.post("/ask")
    async def ask(question: Question) -> dict:
        return {"answer": question.question}

    if mode == "hollow":
        from otel_llm_metrics.frameworks import quiet_app_telemetry

        quiet_app_telemetry(app, tracing=False)  # what ours does to the app when it makes no span
    body = json.dumps({"question": "how do I rotate an api key"}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/ask", "raw_path": b"/ask", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run() -> float:
        for _ in range(500):
            await app({**scope, "state": {}}, receive, send)
        started = time.process_time()
        for _ in range(requests):
            await app({**scope, "state": {}}, receive, send)
        return (time.process_time() - started) / requests * 1e6

    used = asyncio.run(run())
    if set(statuses) != {200}:
        raise SystemExit(f"{mode}: the app answered {sorted(set(statuses))}")
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=list(VARIANTS.values()), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(_one_variant(args.one, args.requests))
        return
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for repeat in range(args.repeats):
        order = list(VARIANTS.items()) if repeat % 2 == 0 else list(VARIANTS.items())[::-1]
        for name, mode in order:
            out = subprocess.run([sys.executable, __file__, "--one", mode, "--requests", str(args.requests)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            results[name].append(float(out.stdout.strip().splitlines()[-1]))
    bare = statistics.median(results["bare (no tracer provider)"])
    print(f"FastAPI POST /ask through its ASGI callable, {args.requests:,} requests per run, median of "
          f"{args.repeats} alternating runs\n")
    print("| variant | CPU per request (us) | runs | over bare |")
    print("|---|---:|---|---:|")
    for name, runs in results.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.0f} | {', '.join(f'{r:.0f}' for r in runs)} | {median - bare:+.0f} |")


if __name__ == "__main__":
    main()
