"""The pieces of the one-endpoint-per-server design: snapshot, merge, directory, exposition."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.samples import Exemplar

from otel_llm_metrics.workers.directory import ServerDirectory, server_master
from otel_llm_metrics.workers.exposition import OPENMETRICS, TEXT, render
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
    return [line for line in render(rows, resource or {}, TEXT).decode().splitlines() if not line.startswith("#")]


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


class _Reference:
    """The same page through prometheus_client's own families and encoders (slow, but theirs)."""

    def __init__(self, rows, resource) -> None:
        self.rows, self.resource = rows, resource

    def collect(self):
        from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name

        labels = {sanitize_attribute(k): str(v) for k, v in self.resource.items()}
        info = InfoMetricFamily("target", "Target metadata", labels=labels)
        info.add_metric(list(labels), labels)
        yield info
        for rows in self.rows:
            points = [({"otel_scope_name": rows.scope[0], "otel_scope_version": rows.scope[1],
                        "otel_scope_schema_url": rows.scope[2],
                        **{sanitize_attribute(k): v if isinstance(v, str) else json.dumps(v) for k, v in p[0].items()}},
                       p) for p in rows.points]
            keys = sorted({k for labels, _ in points for k in labels})
            factory = {"counter": CounterMetricFamily, "histogram": HistogramMetricFamily}.get(rows.kind,
                                                                                              GaugeMetricFamily)
            family = factory(sanitize_full_name(rows.name), rows.description, labels=keys, unit=map_unit(rows.unit))
            for labels, point in points:
                values = [labels.get(k, "") for k in keys]
                if rows.kind != "histogram":
                    family.add_metric(values, point[1])
                    continue
                exemplars = {row[0]: Exemplar({"trace_id": row[3], "span_id": row[4]}, row[1], row[2])
                             for row in point[3]}
                buckets, total = [], 0
                for i, count in enumerate(point[1]):
                    total += count
                    bucket = [f"{rows.bounds[i]}" if i < len(rows.bounds) else "+Inf", total]
                    buckets.append(bucket + ([exemplars[i]] if i in exemplars else []))
                family.add_metric(values, buckets, point[2])
            yield family


def test_the_page_is_byte_for_byte_what_prometheus_client_writes():
    """Both formats, with escapes, big and fractional numbers, and exemplars (OpenMetrics only)."""
    reader = InMemoryMetricReader()
    _, meter = _provider(reader)
    _record(meter, 12_345_678, -3, 1.5e9)
    meter.create_counter("odd.names", description='a "quoted"\\ help\nline').add(2, {"v": 'x"y\\z\nw', "n": 1.5})
    resource, rows = rows_of(reader.get_metrics_data())
    histogram = next(r for r in rows if r.kind == "histogram")
    histogram.points[0][3] = [[1, 0.5, 1700000000.123, "0" * 31 + "1", "0" * 15 + "2"]]
    registry = CollectorRegistry()
    registry.register(_Reference(rows, resource))
    assert render(rows, resource, TEXT) == generate_latest(registry)
    assert render(rows, resource, OPENMETRICS) == generate_openmetrics(registry)


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
