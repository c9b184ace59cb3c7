"""SpanMetricsProcessor on real SDK spans, in-process: what becomes a metric and what does not."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm_metrics import SpanMetricsProcessor

DURATION = "http.server.request.duration"


def _tracer(telemetry, scope: str = "opentelemetry.instrumentation.wsgi"):
    provider = TracerProvider()
    provider.add_span_processor(SpanMetricsProcessor(telemetry.registry))
    return provider.get_tracer(scope)


def test_a_wsgi_server_span_becomes_one_request_with_its_route_and_status(make_telemetry):
    telemetry = make_telemetry()
    tracer = _tracer(telemetry)
    with tracer.start_as_current_span("GET /items/<id>", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET", "http.route": "/items/<id>", "http.response.status_code": 200}):
        pass
    with tracer.start_as_current_span("BREW", kind=SpanKind.SERVER, attributes={"http.method": "BREW"}):
        pass
    view = telemetry.collect()
    ok = view.one(DURATION, http__route="/items/<id>")
    assert ok.count == 1 and ok.attributes["http.response.status_code"] == 200
    other = view.one(DURATION, http__request__method="_OTHER")
    assert "http.response.status_code" not in other.attributes, "no status was recorded on the span"


def test_asgi_server_spans_are_left_to_the_middleware_that_measured_them(make_telemetry):
    telemetry = make_telemetry()
    telemetry.registry.http.middleware_active = True
    tracer = _tracer(telemetry, "opentelemetry.instrumentation.asgi")
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"}):
        pass
    assert telemetry.collect().total_count(DURATION) == 0


def test_gen_ai_client_spans_give_duration_and_tokens_and_failures_an_error_type(make_telemetry):
    telemetry = make_telemetry()
    tracer = _tracer(telemetry, "opentelemetry.instrumentation.openai_v2")
    with tracer.start_as_current_span("chat gpt-x", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-x",
            "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 30}):
        pass
    with tracer.start_as_current_span("chat gpt-x", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-x",
            "gen_ai.usage.output_tokens": -4}) as failed:
        failed.set_status(Status(StatusCode.ERROR))
    view = telemetry.collect()
    ok = view.one("gen_ai.client.operation.duration", gen_ai__provider__name="openai")
    assert ok.count == 1 and "error.type" not in ok.attributes
    assert view.one("gen_ai.client.operation.duration", error__type="_OTHER").count == 1
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in view.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 12, "output": 30}, "a negative count is not a count"


def test_spans_without_attributes_or_of_other_kinds_are_ignored(make_telemetry):
    telemetry = make_telemetry()
    tracer = _tracer(telemetry)
    with tracer.start_as_current_span("internal"):
        pass
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={"http.request.method": "GET"}):
        pass
    view = telemetry.collect()
    assert view.total_count(DURATION) == 0 and not view.points("gen_ai.client.operation.duration")


def test_botocores_bedrock_spans_are_left_to_its_own_metrics_which_are_kept(make_telemetry):
    telemetry = make_telemetry()
    tracer = _tracer(telemetry, "opentelemetry.instrumentation.botocore.bedrock-runtime")
    with tracer.start_as_current_span("chat amazon.nova-lite-v1:0", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.system": "aws.bedrock", "gen_ai.usage.input_tokens": 7,
            "gen_ai.usage.output_tokens": 4}):
        pass
    view = telemetry.collect()
    assert view.points("gen_ai.client.operation.duration") == [], "botocore's own numbers count this call"
    assert view.points("gen_ai.client.token.usage") == []
