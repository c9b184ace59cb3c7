"""Our histograms reach any reader, with its temporality, under this process's resource."""

from __future__ import annotations

import asyncio
import json
import os

from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import AggregationTemporality

from tests.apps import starlette_app
from tests.asgi_client import call

DURATION = "http.server.request.duration"


def test_delta_temporality_reports_only_what_is_new(make_telemetry):
    telemetry = make_telemetry(temporality={Histogram: AggregationTemporality.DELTA})
    app = telemetry.instrument(starlette_app())
    for _ in range(3):
        asyncio.run(call(app, "GET", "/items/1"))
    assert telemetry.collect().one(DURATION).count == 3
    assert telemetry.collect().points(DURATION) == [], "nothing new, nothing reported"
    asyncio.run(call(app, "GET", "/items/1"))
    point = telemetry.collect().one(DURATION)
    assert point.count == 1 and sum(point.bucket_counts) == 1


def test_cumulative_count_equals_the_bucket_total(make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    for _ in range(7):
        asyncio.run(call(app, "GET", "/items/1"))
    point = telemetry.collect().one(DURATION)
    assert point.count == sum(point.bucket_counts) == 7
    assert point.min <= point.sum / 7 <= point.max


def test_forked_worker_reports_itself_not_its_parent(make_telemetry):
    """Pre-fork servers: the child has its own instance id, on its spans too, and starts from zero."""
    telemetry = make_telemetry(service_name="forky", traces_exporter="console")
    tracer = telemetry.tracer_provider.get_tracer("made-before-the-fork")
    app = telemetry.instrument(starlette_app())
    for _ in range(5):
        asyncio.run(call(app, "GET", "/items/1"))
    parent = telemetry.collect()
    parent_instance = parent.resources[0]["service.instance.id"]
    assert parent.one(DURATION).count == 5

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: serve two requests, report what the metrics say
        try:
            for _ in range(2):
                asyncio.run(call(app, "GET", "/items/1"))
            view = telemetry.collect()
            span = tracer.start_span("in-the-child")
            report = {"count": view.one(DURATION).count, "resource": view.resources[0], "pid": os.getpid(),
                      "span_instance": span.resource.attributes["service.instance.id"]}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = json.loads(os.read(read_end, 100_000))
    assert report["count"] == 2
    assert report["resource"]["service.instance.id"] != parent_instance
    assert report["resource"]["process.pid"] == report["pid"] == pid
    assert report["span_instance"] == report["resource"]["service.instance.id"], "one identity for every signal"
    assert report["resource"]["service.name"] == "forky"
    assert telemetry.collect().one(DURATION).count == 5, "the parent keeps its own numbers"
