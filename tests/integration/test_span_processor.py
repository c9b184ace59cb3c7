"""The span processor on spans made by real instrumentation libraries, not by hand."""

from __future__ import annotations

import time
from wsgiref.util import setup_testing_defaults

import openai
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WsgiMiddleware
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest

from otel_llm_metrics import Registry, SpanMetricsProcessor, Telemetry, catalogue, load_settings
from otel_llm_metrics.span_metrics import SpanMetricsProcessor as Processor
from tests.conftest import MetricsView
from tests.integration.servers import AppServer

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline():
    """Our registry behind an in-memory and a Prometheus reader; a tracer provider with the processor."""
    registry = Registry()
    reader = InMemoryMetricReader()
    prometheus = PrometheusMetricReader()
    telemetry = Telemetry(load_settings(environ={}, metrics_exporters=("none",)), registry, [reader, prometheus])
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanMetricsProcessor(registry))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, lambda: MetricsView(reader), spans, lambda: generate_latest(REGISTRY).decode()
    telemetry.shutdown()  # also unregisters the Prometheus reader's collector


def test_openai_v2_client_spans_become_client_metrics(pipeline):
    provider, collect, spans, prometheus_text = pipeline
    upstream = AppServer("otel_llm_metrics.demo.app:app", zero_code=False).wait_ready()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="unused", max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="demo-model", max_tokens=7,
                                           messages=[{"role": "user", "content": "one two three four"}])
        stream = client.chat.completions.create(model="demo-model", max_tokens=5, stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "hi"}])
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert streamed.count(" ") == 5
    finally:
        instrumentor.uninstrument()
        upstream.stop()
    made = [s for s in spans.get_finished_spans() if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(made) == 4, "openai-v2 made the spans"
    view = collect()
    duration = view.one("gen_ai.client.operation.duration", gen_ai__request__model="demo-model")
    assert duration.count == 4 and duration.sum > 0
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in view.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 3 * 4 + 1, "output": 3 * 7 + 5}
    text = prometheus_text()
    for spec in (catalogue.GEN_AI_CLIENT_DURATION, catalogue.GEN_AI_CLIENT_TOKENS):
        assert f"\n{spec.prometheus_name}_count" in text, spec.prometheus_name


def test_wsgi_server_spans_become_http_metrics_once(pipeline):
    provider, collect, _, _ = pipeline

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"flask-like"]

    app = WsgiMiddleware(wsgi_app, tracer_provider=provider)
    for path in ("/a", "/b", "/c"):
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        assert b"".join(app(environ, lambda status, headers, exc=None: None)) == b"flask-like"
    point = collect().one("http.server.request.duration")
    assert point.count == 3
    assert point.attributes["http.request.method"] == "GET"
    assert point.attributes["http.response.status_code"] == 200
    assert "http.route" not in point.attributes, "no raw path ever becomes a route"


def test_processor_cost_per_span_is_constant_and_holds_nothing(pipeline):
    """O(1) memory: after many spans the processor object holds no more state than at start."""
    provider, _, _, _ = pipeline
    processor = next(p for p in provider._active_span_processor._span_processors if isinstance(p, Processor))
    before = dict(vars(processor))
    tracer = provider.get_tracer("test")
    started = time.perf_counter()
    for i in range(2000):
        with tracer.start_as_current_span("work", attributes={"i": i}):
            pass
    assert time.perf_counter() - started < 30
    assert vars(processor) == before
