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


def _wrk(url: str, seconds: float) -> float:
    output = subprocess.run(["wrk", "-t1", "-c16", f"-d{int(seconds)}s", url], capture_output=True, text=True,
                            timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not match:
        raise SystemExit(f"wrk printed no rate:\n{output}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `make system-deps`")
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            process, port = _serve(variant)
            try:
                for case in ("small", "stream"):
                    url = f"http://127.0.0.1:{port}/{case}"
                    _wrk(url, 1)  # warm-up
                    rates.setdefault((variant, case), []).append(_wrk(url, args.seconds))
            finally:
                process.terminate()
                process.wait(10)
    print(f"uvicorn (uvloop, httptools, 1 worker) + wrk -t1 -c16, median of {args.repeats} interleaved "
          f"{args.seconds:.0f}s runs\n")
    print("| variant | small: req/s | kept | 100-chunk stream: streams/s | kept |")
    print("|---|---:|---:|---:|---:|")
    base = {case: statistics.median(rates[("bare", case)]) for case in ("small", "stream")}
    for variant in VARIANTS:
        small = statistics.median(rates[(variant, "small")])
        stream = statistics.median(rates[(variant, "stream")])
        print(f"| {variant} | {small:,.0f} | {small / base['small']:.0%} | {stream:,.0f} | "
              f"{stream / base['stream']:.0%} |")


if __name__ == "__main__":
    main()
