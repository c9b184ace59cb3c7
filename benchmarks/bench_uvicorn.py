"""End-to-end benchmark: uvicorn (uvloop + httptools, 1 worker) over loopback, loaded by wrk.

Each variant gets the same bounded load (wrk: 1 thread, 16 connections, a few seconds), in
interleaved repeats; reports median requests/s and the share of the bare app's throughput kept,
both from the same run. wrk and uvicorn share this machine's 2 cores, as they would on a small
production box with a sidecar.

    .venv/bin/python benchmarks/bench_uvicorn.py [--seconds 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_asgi import _start_sink  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VARIANTS = ["bare", "passthrough", "otel_llm_metrics", "instrumentator", "otel-asgi(metrics)"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(variant: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONPATH": str(ROOT),
           "OTEL_EXPORTER_PROMETHEUS_PORT": str(_free_port())}
    process = subprocess.Popen([str(BIN / "uvicorn"), "benchmarks.variants:app_from_env", "--factory",
                                "--loop", "uvloop", "--http", "httptools", "--port", str(port),
                                "--no-access-log", "--log-level", "warning"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/small", timeout=1).read()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"uvicorn with {variant} did not start")


def _wrk(url: str, seconds: float) -> tuple[float, int]:
    """(requests per second, requests served)."""
    output = subprocess.run(["wrk", "-t1", "-c16", f"-d{int(seconds)}s", url], capture_output=True, text=True,
                            timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    served = re.search(r"(\d+) requests in", output)
    if not match or not served:
        raise SystemExit(f"wrk printed no rate:\n{output}")
    return float(match.group(1)), int(served.group(1))


def _sink_count() -> int:
    return int(urllib.request.urlopen(os.environ["BENCH_OTLP_SINK"] + "/count").read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=VARIANTS, help=f"default: {' '.join(VARIANTS)}; "
                        "tracing: otel_llm_metrics+tracing+otlp otel-asgi(tracer+otlp)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `make system-deps`")
    variants = ["bare", *[v for v in args.variants if v != "bare"]]
    sink = _start_sink() if any("otlp" in v for v in variants) else None
    rates: dict[tuple[str, str], list[float]] = {}
    exported: dict[str, list[int]] = {}  # variant -> [spans the sink got, requests served]
    for _ in range(args.repeats):
        for variant in variants:
            process, port = _serve(variant)
            try:
                for case in ("small", "stream"):
                    url = f"http://127.0.0.1:{port}/{case}"
                    _wrk(url, 1)  # warm-up
                    before = _sink_count() if sink else 0
                    rate, served = _wrk(url, args.seconds)
                    rates.setdefault((variant, case), []).append(rate)
                    if sink and "otlp" in variant:
                        process.terminate()  # the shutdown flush sends what is still queued
                        process.wait(30)
                        counts = exported.setdefault(variant, [0, 0])
                        counts[0] += _sink_count() - before
                        counts[1] += served
                        process, port = _serve(variant)
            finally:
                process.terminate()
                process.wait(30)
    print(f"uvicorn (uvloop, httptools, 1 worker) + wrk -t1 -c16, median of {args.repeats} interleaved "
          f"{args.seconds:.0f}s runs\n")
    print("| variant | small: req/s | kept | 100-chunk stream: streams/s | kept |")
    print("|---|---:|---:|---:|---:|")
    base = {case: statistics.median(rates[("bare", case)]) for case in ("small", "stream")}
    for variant in variants:
        small = statistics.median(rates[(variant, "small")])
        stream = statistics.median(rates[(variant, "stream")])
        print(f"| {variant} | {small:,.0f} | {small / base['small']:.0%} | {stream:,.0f} | "
              f"{stream / base['stream']:.0%} |")
    for variant, (spans, served) in exported.items():  # ours makes one span per request; the peer more
        print(f"\n{variant}: the sink received {spans:,} spans for {served:,} requests served")
    if sink:
        sink.kill()


if __name__ == "__main__":
    main()
