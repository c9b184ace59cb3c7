"""Tracing through a real OTLP receiver (issue 11): our server span continues the caller's trace, and
zero code with opentelemetry-instrumentation-fastapi installed still makes one server span per request."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import httpx
import pytest

from tests import local_http
from tests.integration.servers import ROOT, AppServer, Rotel, free_port, wait_for

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
            response = local_http.get(app.url + "/v1/models", headers={"traceparent": f"00-{TRACE_ID}-{parent}-01"})
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


def test_a_dead_collector_bounds_the_span_queue_and_memory_levels_off():
    """Every request traced, the collector down: the SDK's batch queue (2,048 spans) fills, then drops.
    The server's memory must level off once it is full, however long the collector stays away."""
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    dead = f"http://127.0.0.1:{free_port()}"
    app = AppServer("tests.integration.plain_apps:starlette_app", env={
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": dead, "OTEL_METRICS_EXPORTER": "prometheus"})
    try:
        app.wait_ready("/health")
        process = psutil.Process(app.popen.pid)

        def send(count: int) -> float:
            def one(_: int) -> None:
                with httpx.Client(base_url=app.url, timeout=10) as client:
                    for _ in range(count // 4):
                        assert client.get("/hello/x").status_code == 200
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(one, range(4)))
            return process.memory_info().rss / 2**20

        before = process.memory_info().rss / 2**20
        full = send(4000)  # twice the queue: it is full now
        later = [send(4000) for _ in range(3)]
        print(f"RSS MiB: start {before:.1f}, after 4,000 {full:.1f}, after 8,000/12,000/16,000 "
              + "/".join(f"{r:.1f}" for r in later))
        assert max(later) - full < 8, f"memory keeps growing with a dead collector: {full:.1f} -> {later}"
    finally:
        app.stop()
