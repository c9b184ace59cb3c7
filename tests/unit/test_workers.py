"""The pieces of the one-endpoint-per-server design: snapshot, merge, directory, exposition."""

from __future__ import annotations

import multiprocessing
import os
import time

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from otel_llm_metrics.workers.directory import ServerDirectory, server_master
from otel_llm_metrics.workers.exposition import MergedCollector
from otel_llm_metrics.workers.merge import Source, merge
from otel_llm_metrics.workers.snapshot import Snapshot, rows_of


def _provider(*readers):
    provider = MeterProvider(metric_readers=list(readers), resource=Resource.create({"service.name": "t"}))
    meter = provider.get_meter("scope", "1.0")
    return provider, meter


def _record(meter, requests: int, in_flight: int, rss: float) -> None:
    meter.create_counter("app.requests", unit="{request}", description="requests").add(requests, {"route": "/a"})
    meter.create_histogram("http.server.request.duration", unit="s", description="d",
                           explicit_bucket_boundaries_advisory=[0.1, 1.0]).record(0.5, {"route": "/a"})
    meter.create_up_down_counter("app.in_flight", unit="{request}").add(in_flight)
    meter.create_gauge("process.memory.rss", unit="By").set(rss)
    meter.create_gauge("system.load", unit="1").set(rss / 1000)


def _worker(pid: int, requests: int, in_flight: int, rss: float) -> Snapshot:
    reader = InMemoryMetricReader()
    _, meter = _provider(reader)
    _record(meter, requests, in_flight, rss)
    resource, rows = rows_of(reader.get_metrics_data())
    return Snapshot(pid, 1.0, time.time(), resource, rows)


def _text(rows, resource=None) -> list[str]:
    registry = CollectorRegistry()
    registry.register(MergedCollector(lambda: (rows, resource or {})))
    return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]


def _value(lines: list[str], prefix: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix)]


def test_one_worker_renders_exactly_what_the_otel_exporter_renders():
    """Names, labels, buckets and values as the OTel Prometheus exporter writes them (dashboards rely on it)."""
    registry = CollectorRegistry()
    memory = InMemoryMetricReader()
    _, meter = _provider(PrometheusMetricReader(registry=registry), memory)
    _record(meter, 3, 2, 1000.0)
    resource, rows = rows_of(memory.get_metrics_data())
    theirs = {line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")}
    assert set(_text(rows, resource)) == theirs


def test_dead_workers_keep_their_totals_and_lose_their_gauges():
    own, live, dead = _worker(1, 3, 1, 100.0), _worker(2, 5, 2, 200.0), _worker(3, 7, 4, 300.0)
    lines = _text(merge([Source(own, True, serving=True), Source(live, True), Source(dead, False)]))
    assert _value(lines, "app_requests_total{") == [15.0], "counters: every worker, the dead one included"
    assert _value(lines, "http_server_request_duration_seconds_count{") == [3.0]
    assert _value(lines, 'http_server_request_duration_seconds_bucket{le="1.0"') == [3.0]
    assert _value(lines, "app_in_flight{") == [3.0], "in flight: live workers only"
    rss = sorted(line.split("process_pid=")[1] for line in lines if line.startswith("process_memory_rss"))
    assert rss == ['"1"} 100.0', '"2"} 200.0'], "per-worker gauges, live workers only"
    assert _value(lines, "system_load{") == [0.1], "machine-wide: the serving worker's value alone"


def test_retiring_dead_workers_changes_no_total_and_survives_a_crash_midway(tmp_path):
    directory = ServerDirectory(tmp_path)
    own = _worker(os.getpid(), 1, 0, 1.0)
    dead = [_worker(9_999_990 + i, 10 * (i + 1), 1, 1.0) for i in range(3)]
    for snapshot in dead:
        directory.write(snapshot)

    def total() -> float:
        others = directory.read_others(directory.snapshot_path(own.pid, own.started))
        sources = [Source(own, True, serving=True)] + [Source(s, False) for _, s in others.dead]
        sources += [Source(others.retired, False)] if others.retired else []
        return _value(_text(merge(sources)), "app_requests_total{")[0]

    before = total()
    assert before == 1 + 10 + 20 + 30
    others = directory.read_others(directory.snapshot_path(own.pid, own.started))
    directory.retire(others)
    assert not list(tmp_path.glob("worker-99999*.json")), "folded files are removed"
    assert total() == before
    directory.write(dead[0])  # as if the holder died after writing the totals, before removing a file
    assert total() == before, "a file the totals already hold is not counted twice"
    directory.write(_worker(888_888_8, 5, 0, 1.0))
    directory.retire(directory.read_others(directory.snapshot_path(own.pid, own.started)))
    assert total() == before + 5, "a second death adds to the totals"


def _master_in_child(queue) -> None:
    queue.put((server_master(os.getpid()), os.getppid()))


def test_the_server_a_process_belongs_to():
    assert server_master(os.getpid()) is None, "a process started by hand serves alone"
    context = multiprocessing.get_context("spawn")  # how uvicorn --workers starts its workers
    queue = context.Queue()
    child = context.Process(target=_master_in_child, args=(queue,))
    child.start()
    master, parent = queue.get(timeout=30)
    child.join(30)
    assert master == parent == os.getpid()
    reader, writer = os.pipe()
    pid = os.fork()  # gunicorn forks its workers; here, after "set-up" in the parent
    if pid == 0:
        os.write(writer, str(server_master(os.getppid())).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert int(os.read(reader, 32)) == os.getpid()
