"""Tracing through a real OTLP receiver (issue 11): our server span continues the caller's trace, and
zero code with opentelemetry-instrumentation-fastapi installed still makes one server span per request."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import httpx
import pytest

from tests.integration.servers import ROOT, AppServer, Rotel, wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def fastapi_instrumentation(tmp_path_factory):
    """opentelemetry-instrumentation-fastapi, the version matching ours, on a path of its own."""
    version = importlib.metadata.version("opentelemetry-instrumentation")
    target = tmp_path_factory.mktemp("fastapi-instrumentation")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    f"opentelemetry-instrumentation-fastapi=={version}"], check=True, timeout=300)
    return target


def _spans(log: str, trace_id: str) -> list[dict[str, str]]:
    """The spans of one trace in rotel's debug log: scope, name, kind, parent."""
    found = []
    for scope, block in re.findall(r"InstrumentationScope (\S+)[^\n]*\n(.*?)(?=InstrumentationScope |\Z)", log, re.S):
        for span in re.split(r"Span #\d+", block)[1:]:
            fields = dict(re.findall(r"^\s+(Trace ID|Parent ID|Name|Kind)\s+: (.*)$", span, re.M))
            if fields.get("Trace ID") == trace_id:
                found.append({"scope": scope, **fields})
    return found


def test_zero_code_with_instrumentation_fastapi_makes_one_server_span_in_the_callers_trace(fastapi_instrumentation):
    rotel = Rotel()
    app = AppServer("otel_llm_metrics.demo.app:app", env={
        "PYTHONPATH": f"{ROOT}:{fastapi_instrumentation}", "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint("grpc"), "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        app.wait_ready("/health")
        assert "FastAPIInstrumentor's server span turned off" in app.log(), "the instrumentation was active"
        parent = "00f067aa0ba902b7"
        for _ in range(3):
            response = httpx.get(app.url + "/v1/models", headers={"traceparent": f"00-{TRACE_ID}-{parent}-01"})
            assert response.headers["x-request-id"] == TRACE_ID
        wait_for(lambda: len(_spans(rotel.log(), TRACE_ID)) >= 3, "the three requests' spans at the receiver")
        spans = _spans(rotel.log(), TRACE_ID)
        server = [s for s in spans if s["Kind"] == "SPAN_KIND_SERVER"]
        assert len(server) == 3, f"one server span per request: {spans}"
        assert all(s["scope"] == "otel_llm_metrics" and s["Name"] == "GET /v1/models" and s["Parent ID"] == parent
                   for s in server), server
        assert not [s for s in spans if s["scope"].startswith("opentelemetry.instrumentation.")], spans
    finally:
        app.stop()
        rotel.stop()
