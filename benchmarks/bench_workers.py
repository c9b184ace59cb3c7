"""The one endpoint of a multi-worker server: what a scrape costs, and whether memory stays flat.

1. Scrape: 8 workers with 2,000 histogram series each (the serving worker live, 7 others as files
   written by live processes), rendered as Prometheus text and as OpenMetrics. Target: <= 300 ms.
2. Memory: 100,000 requests through the middleware of a worker that hands its numbers over every
   0.1 s and is scraped every 1,000 requests; RSS after each 10,000 (target: flat).

    .venv/bin/python benchmarks/bench_workers.py [--series 2000] [--workers 8] [--requests 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from benchmarks.bench_asgi import _scope  # noqa: E402
from benchmarks.variants import bare  # noqa: E402
from otel_llm_metrics import Registry, Telemetry, load_settings  # noqa: E402
from otel_llm_metrics.catalogue import DURATION_BUCKETS  # noqa: E402
from otel_llm_metrics.workers.directory import ServerDirectory, started  # noqa: E402
from otel_llm_metrics.workers.endpoint import Endpoint  # noqa: E402
from otel_llm_metrics.workers.page_server import serve  # noqa: E402
from otel_llm_metrics.workers.snapshot import Snapshot, rows_of  # noqa: E402


def _worker_metrics(series: int) -> InMemoryMetricReader:
    """``series`` request-duration series (route x status), each with a few observations."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("otel_llm_metrics", "0.1.0")
    histogram = meter.create_histogram("http.server.request.duration", unit="s",
                                       explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
    for i in range(series):
        attributes = {"http.request.method": "POST", "url.scheme": "http", "http.route": f"/v1/route/{i // 5}",
                      "http.response.status_code": 200 + i % 5}
        for value in (0.02, 0.3, 1.7):
            histogram.record(value, attributes)
    return reader


def bench_scrape(series: int, workers: int, repeats: int) -> None:
    reader = _worker_metrics(series)
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(workers - 1)]  # live pids for the files
    try:
        with tempfile.TemporaryDirectory() as path:
            directory = ServerDirectory(Path(path))
            resource, rows = rows_of(reader.get_metrics_data())
            for sleeper in sleepers:
                directory.write(Snapshot(sleeper.pid, started(sleeper.pid) or 0.0, time.time(), resource, rows))
            size = sum(p.stat().st_size for p in Path(path).glob("worker-*.json"))
            endpoint = Endpoint(load_settings(environ={}), reader.get_metrics_data, os.getpid(), print)
            endpoint.directory = directory
            for accept, label in ((None, "Prometheus text"), ("application/openmetrics-text", "OpenMetrics")):
                endpoint.exposition(accept)  # warm-up
                times, body = [], b""
                for _ in range(repeats):
                    gc.collect()
                    t0 = perf_counter()
                    body, _ = endpoint.exposition(accept)
                    times.append(perf_counter() - t0)
                print(f"scrape, {workers} workers x {series} series, {label}: "
                      f"median {statistics.median(times) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms; "
                      f"page {len(body) / 1e6:.1f} MB, files {size / 1e6:.1f} MB")
            server = serve("127.0.0.1", _free_port(), endpoint.exposition)
            url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
            times = []
            for _ in range(repeats):
                t0 = perf_counter()
                httpx.get(url, headers={"accept": "application/openmetrics-text"}, timeout=30).raise_for_status()
                times.append(perf_counter() - t0)
            server.shutdown()
            print(f"scrape over HTTP (OpenMetrics): median {statistics.median(times) * 1e3:.0f} ms, "
                  f"max {max(times) * 1e3:.0f} ms")
            t0 = perf_counter()
            endpoint.hand_over()
            print(f"hand-over of one worker ({series} series): {(perf_counter() - t0) * 1e3:.0f} ms")
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


def bench_memory(requests: int) -> None:
    with tempfile.TemporaryDirectory() as path:
        settings = load_settings(environ={}, workers_dir=path, workers_interval=0.1, resources="process",
                                 prometheus_port=_free_port())
        telemetry = Telemetry(settings, Registry())
        # As a worker of a pre-fork server: created in "another" process, so it hands over to a directory.
        endpoint = Endpoint(settings, telemetry._endpoint_reader.get_metrics_data, -1, print)
        endpoint.start()
        telemetry.endpoint, telemetry.serving = endpoint, True
        app = telemetry.instrument(bare())
        process = psutil.Process()

        async def drive() -> list[tuple[int, float]]:
            request = {"type": "http.request", "body": b"", "more_body": False}

            async def receive():
                return request

            async def send(message):
                pass

            samples = []
            for i in range(1, requests + 1):
                await app(_scope("/small" if i % 3 else "/stream"), receive, send)
                if i % 1000 == 0:
                    endpoint.exposition(None)
                if i % 10_000 == 0:
                    gc.collect()
                    samples.append((i, process.memory_info().rss / 1e6))
            return samples

        samples = asyncio.run(drive())
        endpoint.stop()
        telemetry.shutdown()
    first = samples[0][1]
    print("RSS by requests served: " + ", ".join(f"{n // 1000}k {rss:.1f} MB" for n, rss in samples))
    print(f"growth from 10k to {requests // 1000}k requests: {samples[-1][1] - first:+.1f} MB")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    bench_scrape(args.series, args.workers, args.repeats)
    bench_memory(args.requests)


if __name__ == "__main__":
    main()
