"""The CLI's reading of a real exposition, made in-process by our own Prometheus reader."""

from __future__ import annotations

import asyncio
import math

from prometheus_client import generate_latest

from otel_llm_metrics import Registry, Telemetry, load_settings
from otel_llm_metrics.cli import HistogramData, parse, summary
from tests.apps import starlette_app
from tests.asgi_client import call
from tests.integration.servers import free_port


def _exposition() -> str:
    """What our endpoint would serve (its HTTP server starts too, on a free port)."""
    settings = load_settings({}, metrics_exporters="prometheus", resources="none", prometheus_port=free_port())
    telemetry = Telemetry(settings, Registry())
    app = telemetry.instrument(starlette_app())

    async def traffic() -> None:
        for path in ("/items/1", "/items/2", "/nowhere", "/stream?n=5"):
            await call(app, "GET", path)

    asyncio.run(traffic())
    try:
        return generate_latest(telemetry._prometheus_registry).decode()
    finally:
        telemetry.shutdown()


def test_summary_counts_requests_per_route_and_names_the_unmatched_ones():
    report = summary(_exposition())
    lines = report.splitlines()
    assert any("/items/{item_id}" in line and " 2  p50" in line for line in lines), report
    assert any("(unmatched)" in line and " 1  p50" in line for line in lines), report
    assert "Streams: completed 1" in report
    assert "5 chunks" in report


def test_parse_keeps_histograms_by_label_set_without_scope_labels():
    _, histograms = parse(_exposition())
    series = histograms["http_server_request_duration_seconds"]
    assert sum(data.count for data in series.values()) == 4
    assert not any(k.startswith("otel_scope_") for key in series for k, _ in key)


def test_quantile_interpolates_inside_the_bucket_like_prometheus():
    data = HistogramData(buckets={0.1: 0.0, 0.2: 10.0, math.inf: 10.0}, count=10.0)
    assert math.isclose(data.quantile(0.5), 0.15)
    assert math.isnan(HistogramData().quantile(0.5))
