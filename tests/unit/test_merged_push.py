"""The merged view back as the SDK's MetricsData (workers/otlp_push.py): kinds, temporalities, exemplars, the
OTLP encoding, and delta going on across a change of holder through the directory."""

from __future__ import annotations

import time

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from otel_llm_metrics.workers.directory import ServerDirectory
from otel_llm_metrics.workers.merge import Source, merge
from otel_llm_metrics.workers.otlp_push import metrics_data, server_instance_id
from otel_llm_metrics.workers.snapshot import COUNTER, HISTOGRAM, Snapshot, rows_of

CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA


def _worker(pid: int, requests: int, durations: list[float]) -> Snapshot:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "t"}))
    meter = provider.get_meter("scope", "1.0")
    meter.create_counter("app.requests").add(requests, {"route": "/a"})
    histogram = meter.create_histogram("http.server.request.duration", unit="s",
                                       explicit_bucket_boundaries_advisory=[0.1, 1.0])
    for value in durations:
        histogram.record(value, {"route": "/a"})
    meter.create_up_down_counter("app.in_flight").add(2)
    meter.create_gauge("process.memory.usage").set(pid * 10)
    resource, rows = rows_of(reader.get_metrics_data())
    return Snapshot(pid, 1.0, time.time(), resource, rows)


def _by_name(data) -> dict:
    (resource_metrics,) = data.resource_metrics
    return {m.name: m for sm in resource_metrics.scope_metrics for m in sm.metrics}


def test_cumulative_sums_every_worker_and_keeps_gauges_per_worker():
    rows = merge([Source(_worker(1, 3, [0.05, 2.0]), alive=True, serving=True), Source(_worker(2, 4, [0.5]), True)])
    temporality = {COUNTER: CUMULATIVE, HISTOGRAM: CUMULATIVE, "updown": CUMULATIVE}
    data = metrics_data(rows, Resource({"service.instance.id": "host-1"}), temporality, 100, 100, 200, {}, {})
    metrics = _by_name(data)
    (requests,) = metrics["app.requests"].data.data_points
    assert (requests.value, requests.start_time_unix_nano, metrics["app.requests"].data.is_monotonic) == (7, 100, True)
    (duration,) = metrics["http.server.request.duration"].data.data_points
    assert (duration.count, list(duration.bucket_counts), list(duration.explicit_bounds)) == (3, [1, 1, 1], [0.1, 1.0])
    assert metrics["app.in_flight"].data.data_points[0].value == 4
    assert metrics["app.in_flight"].data.is_monotonic is False
    gauges = {p.attributes["process.pid"]: p.value for p in metrics["process.memory.usage"].data.data_points}
    assert gauges == {1: 10, 2: 20}
    encoded = encode_metrics(data)  # what the OTLP exporter sends
    assert encoded.resource_metrics[0].scope_metrics[0].scope.name == "scope"


def test_delta_is_the_gain_over_what_was_pushed_last_whoever_pushed_it(tmp_path):
    temporality = {COUNTER: DELTA, HISTOGRAM: DELTA, "updown": CUMULATIVE}
    resource = Resource({})
    first = merge([Source(_worker(1, 3, [0.05]), alive=True, serving=True)])
    pushed: dict = {}
    data = metrics_data(first, resource, temporality, 100, 100, 200, {}, pushed)
    assert _by_name(data)["app.requests"].data.data_points[0].value == 3
    directory = ServerDirectory(tmp_path)
    directory.write_pushed(0, {"time": 200, "points": pushed})  # the holder dies; another takes over
    last = directory.read_pushed(0)
    second = merge([Source(_worker(1, 5, [0.05, 0.5]), alive=False), Source(_worker(2, 1, []), alive=True)])
    data = metrics_data(second, resource, temporality, 100, last["time"], 300, last["points"], {})
    metrics = _by_name(data)
    (requests,) = metrics["app.requests"].data.data_points
    assert (requests.value, requests.start_time_unix_nano) == (3, 200)
    (duration,) = metrics["http.server.request.duration"].data.data_points
    assert (duration.count, list(duration.bucket_counts)) == (1, [0, 1, 0])
    assert metrics["app.requests"].data.aggregation_temporality == DELTA


def test_nothing_new_is_nothing_to_push():
    rows = merge([Source(_worker(1, 3, [0.05]), alive=False)])  # a dead worker: no up-down counters, no gauges
    temporality = {COUNTER: DELTA, HISTOGRAM: DELTA, "updown": CUMULATIVE}
    pushed: dict = {}
    metrics_data(rows, Resource({}), temporality, 0, 0, 1, {}, pushed)
    assert metrics_data(rows, Resource({}), temporality, 0, 1, 2, pushed, {}) is None


def test_the_server_id_is_the_pod_under_kubernetes_else_host_and_master(monkeypatch):
    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert server_instance_id(42).endswith("-42")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("HOSTNAME", "api-7d9f-abc")
    assert server_instance_id(42) == "api-7d9f-abc"
    monkeypatch.setenv("POD_NAME", "api-pod")
    assert server_instance_id(1) == "api-pod"
