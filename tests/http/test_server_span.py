"""The server span our middleware makes (issue 11): parent context, names, attributes, status,
exceptions, stream milestones, and one span per request whatever else instruments the app."""

from __future__ import annotations

import pytest
from opentelemetry import baggage
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.apps import starlette_app
from tests.asgi_client import call

TRACE_ID, PARENT_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()



@pytest.fixture
def traced(make_telemetry):
    telemetry = make_telemetry(traces_exporter="console")
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    return telemetry, spans


def _server_spans(spans: InMemorySpanExporter) -> list:
    return [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]


def test_the_callers_trace_is_continued_and_the_request_id_is_its_trace_id(run, traced):
    telemetry, spans = traced

    async def who(request):
        return PlainTextResponse(str(baggage.get_baggage("tenant")))
    app = telemetry.instrument(Starlette(routes=[Route("/who/{name}", who)]))
    result = run(call(app, "GET", "/who/x?debug=1", headers=[(b"traceparent", TRACEPARENT),
                                                              (b"baggage", b"tenant=acme"), (b"host", b"api:8443"),
                                                              (b"user-agent", b"openai-python/1.0")]))
    assert b"".join(result.chunks) == b"acme", "W3C baggage reaches the app"
    (span,) = _server_spans(spans)
    assert f"{span.context.trace_id:032x}" == TRACE_ID and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.parent.is_remote and span.name == "GET /who/{name}"
    assert dict(result.headers)[b"x-request-id"] == TRACE_ID.encode()
    attributes = dict(span.attributes)
    assert attributes["http.request.method"] == "GET" and attributes["http.route"] == "/who/{name}"
    assert attributes["http.response.status_code"] == 200 and attributes["url.path"] == "/who/x"
    assert attributes["url.query"] == "debug=1" and attributes["url.scheme"] == "http"
    assert attributes["server.address"] == "api" and attributes["server.port"] == 8443
    assert attributes["client.address"] == "127.0.0.1" and attributes["user_agent.original"] == "openai-python/1.0"
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time > span.start_time


def test_without_a_caller_a_new_trace_starts(run, traced):
    telemetry, spans = traced
    run(call(telemetry.instrument(starlette_app()), "GET", "/items/7"))
    (span,) = _server_spans(spans)
    assert span.parent is None and span.context.trace_id != 0


def test_an_exception_is_recorded_once_and_the_span_is_an_error(run, traced):
    telemetry, spans = traced
    result = run(call(telemetry.instrument(starlette_app()), "GET", "/boom"))
    assert result.raised is not None
    (span,) = _server_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    assert span.attributes["error.type"] == type(result.raised).__qualname__ or "." in span.attributes["error.type"]


def test_a_client_error_is_not_a_server_error_and_an_unmatched_path_names_only_the_method(run, traced):
    telemetry, spans = traced
    run(call(telemetry.instrument(starlette_app()), "GET", "/x/evil\r\ninjected: yes"))
    (span,) = _server_spans(spans)
    assert span.name == "GET" and span.attributes["http.response.status_code"] == 404
    assert span.status.status_code is StatusCode.UNSET and "http.route" not in span.attributes


def test_a_stream_has_its_milestones_and_excluded_routes_have_no_span(run, traced):
    telemetry, spans = traced
    app = telemetry.instrument(starlette_app())
    run(call(app, "GET", "/stream?n=5"))
    run(call(app, "GET", "/health"))
    (span,) = _server_spans(spans)
    assert [event.name for event in span.events] == ["http.stream.first_byte", "http.stream.end"]
    assert span.attributes["http.stream.outcome"] == "completed"


def test_an_outer_instrumentation_keeps_its_span_and_we_make_none(run, traced):
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    telemetry, spans = traced
    app = OpenTelemetryMiddleware(telemetry.instrument(starlette_app()), tracer_provider=telemetry.tracer_provider,
                                  exclude_spans=["receive", "send"])
    run(call(app, "GET", "/items/7", headers=[(b"traceparent", TRACEPARENT)]))
    (span,) = _server_spans(spans)
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.asgi"
    assert span.name == "GET /items/{item_id}", "our route name on their span"
    assert f"{span.context.trace_id:032x}" == TRACE_ID


def test_fastapi_native_tracing_is_replaced_by_ours(run, make_telemetry):
    from tests.apps import fastapi_app

    telemetry = make_telemetry(traces_exporter="console")
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app = fastapi_app()
    telemetry.add_to(app)
    run(call(app, "GET", "/items/3", headers=[(b"traceparent", TRACEPARENT)]))
    server = _server_spans(spans)
    assert len(server) == 1 and server[0].instrumentation_scope.name == "otel_llm_metrics", server
    assert f"{server[0].parent.span_id:016x}" == PARENT_ID



def test_with_ours_making_no_span_a_fastapi_app_still_sees_the_callers_trace_and_baggage(run, make_telemetry):
    """Ours make no span (OTEL_TRACES_EXPORTER=none); FastAPI's native tracing, on a provider with no processor,
    is what puts the caller's context in place for the app (and for what it calls): it stays on. Turning it off
    where no processor listens (tried and withdrawn) left the app with no baggage and no trace."""
    from fastapi import FastAPI
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    app = FastAPI(telemetry={"tracer_provider": TracerProvider()})

    @app.get("/who")
    async def who() -> PlainTextResponse:
        context = trace.get_current_span().get_span_context()
        return PlainTextResponse(f"{baggage.get_baggage('tenant')} {context.trace_id:032x}")

    telemetry = make_telemetry(traces_exporter="none")
    assert telemetry.tracer_provider is None, "ours make no span here"
    response = run(call(telemetry.instrument(app), "GET", "/who",
                        headers=[(b"traceparent", TRACEPARENT), (b"baggage", b"tenant=acme")]))
    assert response.body == f"acme {TRACE_ID}".encode()
