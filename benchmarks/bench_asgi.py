"""In-process ASGI benchmark: the cost each instrumentation adds per request and per stream.

Drives each variant's ASGI callable directly (no sockets), 20,000 requests per variant and case,
in interleaved repeats so that machine noise hits every variant alike; reports medians and the
difference to the bare app measured in the same run.

    .venv/bin/python benchmarks/bench_asgi.py [--requests 20000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.variants import CHUNKS, VARIANTS  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000, help="per variant and case")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=None)
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
