"""FastAPI's native spans under ours when ours make none (OTEL_TRACES_EXPORTER=none): hollow while no span
processor listens, with the context the SDK would have given them, real again once one is added."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind
from starlette.responses import PlainTextResponse

from otel_llm_metrics.unheard_spans import HollowWhileUnheard
from tests.asgi_client import call

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SAMPLED = f"00-{TRACE_ID}-b7ad6b7169203331-01".encode()
NOT_SAMPLED = f"00-{TRACE_ID}-b7ad6b7169203331-00".encode()


def _app(provider: TracerProvider) -> Any:
    """A FastAPI app whose endpoint answers with the context it runs in."""
    from fastapi import FastAPI

    app = FastAPI(telemetry={"tracer_provider": provider})

    @app.get("/who")
    async def who() -> PlainTextResponse:
        span = trace.get_current_span()
        context = span.get_span_context()
        return PlainTextResponse(f"{baggage.get_baggage('tenant')} {context.trace_id:032x} {context.is_valid} "
                                 f"{context.trace_flags.sampled} {context.trace_state.to_header()}")

    return app


def _who(run, app: Any, *headers: tuple[bytes, bytes]) -> list[str]:
    response = run(call(app, "GET", "/who", headers=list(headers)))
    assert response.status == 200, response.body
    return response.body.decode().split(" ")


CALLERS = {
    "sampled, with baggage and trace state": ((b"traceparent", SAMPLED), (b"baggage", b"tenant=acme"),
                                              (b"tracestate", b"vendor=x")),
    "not sampled": ((b"traceparent", NOT_SAMPLED),),
    "no caller": (),
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("sampler", ["the SDK's default", "a root that never samples"])
def test_the_app_sees_the_context_it_sees_bare(run, make_telemetry, caller, sampler):
    """Same baggage, trace id (the caller's), sampled flag and trace state as the same app bare, where the SDK
    makes each span; with no caller, a new valid trace, as bare (its id is random, so only its validity)."""
    def provider() -> TracerProvider:
        return TracerProvider() if sampler == "the SDK's default" else TracerProvider(sampler=ParentBased(ALWAYS_OFF))

    bare = _who(run, _app(provider()), *CALLERS[caller])
    hollow_provider = provider()
    app = _app(hollow_provider)
    telemetry = make_telemetry(traces_exporter="none")
    assert telemetry.tracer_provider is None, "ours make no span here"
    ours = _who(run, telemetry.instrument(app), *CALLERS[caller])
    assert isinstance(app._telemetry["tracer_provider"], HollowWhileUnheard)
    if caller == "no caller":
        bare[1] = ours[1] = "(random)"
    else:
        assert ours[1] == TRACE_ID
    assert ours == bare
    assert ours[2] == "True"


def test_the_spans_are_hollow_until_a_processor_listens_then_real(run, make_telemetry):
    provider = TracerProvider()
    app = _app(provider)
    wrapped = make_telemetry(traces_exporter="none").instrument(app)
    tracer = app._telemetry["tracer_provider"].get_tracer("fastapi")
    assert not tracer.start_span("unheard").is_recording()
    with tracer.start_as_current_span("unheard") as span:
        assert trace.get_current_span() is span and not span.is_recording()

    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    assert _who(run, wrapped, (b"traceparent", SAMPLED))[1] == TRACE_ID
    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind is SpanKind.SERVER]
    assert len(server) == 1 and server[0].instrumentation_scope.name == "fastapi", finished
    assert f"{server[0].context.trace_id:032x}" == TRACE_ID
    assert any(s.name == "fastapi.endpoint" for s in finished), [s.name for s in finished]


def test_a_span_is_real_where_the_sdk_counts_its_own_spans(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    tracer = HollowWhileUnheard(TracerProvider()).get_tracer("fastapi")
    assert tracer.start_span("counted").is_recording()


def test_fastapis_own_export_set_up_keeps_its_provider(make_telemetry):
    """auto_configure registers its exporter on the configured provider: a wrapper would refuse it."""
    from fastapi import FastAPI

    app = FastAPI(telemetry={"auto_configure": True})
    make_telemetry(traces_exporter="none").instrument(app)
    assert app._telemetry["tracer_provider"] is None and app._telemetry["tracing"] is True


def test_inside_a_hollow_span_a_child_leaves_it_current_under_the_default_sampler_only():
    """The child would differ from its parent by an unheard span id alone; another sampler may decide otherwise
    for it, and a recording span (another provider's) is never handed out to be changed."""
    default = HollowWhileUnheard(TracerProvider()).get_tracer("fastapi")
    server = default.start_span("GET /who")
    with trace.use_span(server), default.start_as_current_span("fastapi.endpoint") as child:
        assert child is server and trace.get_current_span() is server

    other = HollowWhileUnheard(TracerProvider(sampler=ParentBased(ALWAYS_OFF))).get_tracer("fastapi")
    server = other.start_span("GET /who")
    with trace.use_span(server), other.start_as_current_span("fastapi.endpoint") as child:
        assert child is not server and trace.get_current_span() is child
        assert child.get_span_context().trace_id == server.get_span_context().trace_id

    spans = InMemorySpanExporter()
    heard = TracerProvider()
    heard.add_span_processor(SimpleSpanProcessor(spans))
    with heard.get_tracer("outer").start_as_current_span("outer") as outer, \
            default.start_as_current_span("fastapi.endpoint") as child:
        assert child is not outer and not child.is_recording()
        assert child.get_span_context().trace_id == outer.get_span_context().trace_id


def test_an_sdk_that_does_not_count_its_spans_at_all_still_gets_hollow_ones():
    """SDKs before 1.4x have no span metrics of their own (no ``_tracer_metrics``)."""
    tracer = HollowWhileUnheard(TracerProvider()).get_tracer("fastapi")
    del tracer._real._tracer_metrics
    assert not tracer.start_span("unheard").is_recording()
