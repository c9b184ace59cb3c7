"""The merged OTLP push of a multi-worker server (workers/otlp_push.py) against the per-worker pushes it replaces,
in CPU milliseconds per push interval.

Each worker has ``--series`` histogram series (explicit buckets) and as many counter series. Per-worker mode:
each of ``--workers`` collects and encodes its own export. Merged mode: the holder collects its own numbers, writes
its file, reads the others' files, merges, converts to MetricsData and encodes one export; every worker also hands
its numbers over once per OTEL_LLM_METRICS_WORKERS_INTERVAL (1 s), which is shown apart.

    .venv/bin/python benchmarks/bench_merged_push.py [--series 500] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402

from otel_llm_metrics.catalogue import DURATION_BUCKETS  # noqa: E402
from otel_llm_metrics.workers.directory import ServerDirectory  # noqa: E402
from otel_llm_metrics.workers.merge import Source, merge, server_resource  # noqa: E402
from otel_llm_metrics.workers.otlp_push import metrics_data  # noqa: E402
from otel_llm_metrics.workers.snapshot import COUNTER, HISTOGRAM, Snapshot, rows_of  # noqa: E402


def _worker(series: int) -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "bench"}))
    meter = provider.get_meter("otel_llm_metrics", "0.1.0")
    histogram = meter.create_histogram("http.server.request.duration", unit="s",
                                       explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
    counter = meter.create_counter("gen_ai.server.requests")
    for i in range(series):
        attributes = {"http.route": f"/r/{i}", "http.request.method": "GET", "http.response.status_code": 200}
        histogram.record(0.01 * (i % 50), attributes)
        counter.add(1, attributes)
    return reader


def _cpu_ms(action, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        action()
        samples.append((time.process_time() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    reader = _worker(args.series)

    def per_worker_push() -> None:
        encode_metrics(reader.get_metrics_data()).SerializeToString()

    def hand_over(directory: ServerDirectory) -> Snapshot:
        resource, rows = rows_of(reader.get_metrics_data())
        snapshot = Snapshot(os.getpid(), 1.0, time.time(), resource, rows)
        directory.write(snapshot)
        return snapshot

    with tempfile.TemporaryDirectory() as tmp:
        directory = ServerDirectory(Path(tmp))
        own = hand_over(directory)
        for pid in range(1, args.workers):  # the siblings' files (pids that are not running: read all the same)
            directory.write(Snapshot(4_000_000 + pid, 1.0, time.time(), own.resource, own.metrics))
        temporality = {COUNTER: AggregationTemporality.CUMULATIVE, HISTOGRAM: AggregationTemporality.CUMULATIVE,
                       "updown": AggregationTemporality.CUMULATIVE}

        def merged_push() -> None:
            mine = hand_over(directory)
            others = directory.read_others(directory.snapshot_path(mine.pid, mine.started))
            sources = [Source(mine, alive=True, serving=True)]
            sources += [Source(snapshot, alive=False) for _, snapshot in others.dead]
            rows = merge(sources)
            data = metrics_data(rows, Resource(server_resource(mine.resource)), temporality, 0, 0, 1, {}, {})
            encode_metrics(data).SerializeToString()

        one = _cpu_ms(per_worker_push, args.repeat)
        merged = _cpu_ms(merged_push, args.repeat)
        handing = _cpu_ms(lambda: hand_over(directory), args.repeat)
    print(f"{args.workers} workers x {args.series} histogram + {args.series} counter series, CPU ms (median):")
    print(f"  per-worker pushes, per interval: {one:.1f} ms each, {one * args.workers:.1f} ms for the server")
    print(f"  merged push, per interval:       {merged:.1f} ms (the holder alone)")
    print(f"  hand-over, per worker per OTEL_LLM_METRICS_WORKERS_INTERVAL (1 s): {handing:.1f} ms")


if __name__ == "__main__":
    main()
