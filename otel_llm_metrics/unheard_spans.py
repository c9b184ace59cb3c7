"""Spans nobody listens to, made for the context they carry and nothing else.

Zero code's SDK configuration sets a tracer provider even under ``OTEL_TRACES_EXPORTER=none``; it has no span
processor, so every span it makes is built, timed, cleaned of attributes and thrown away. FastAPI's native
tracing makes four of them per request (the server span, then operation spans): 135 µs of CPU per request on
this machine, more than FastAPI's own work. Its server span is also what puts the caller's trace and baggage in
place for the app, so the spans cannot simply stop.

``HollowWhileUnheard`` wraps an SDK provider for one instrumentation: while the provider has no span processor,
its tracers return non-recording spans with the context the SDK would have given them (the caller's trace id or
a new one from the provider's id generator, a new span id, the provider's sampler's flags and trace state), so the
app, its logs and what it calls see what they saw before. Under the SDK's default sampler, a span made current
inside another hollow one (FastAPI's operation spans) leaves that one current: the child would differ from it by
its span id alone, an id no processor ever hears of. Once a processor is added, or where the SDK counts its own
spans (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``), the provider's real spans are made again, call by call.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.util.types import Attributes

_RANDOM_TRACE_ID = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # W3C Trace Context level 2; newer APIs only


class HollowWhileUnheard(trace.TracerProvider):
    """An SDK tracer provider whose spans are hollow while no span processor listens (not a NoOpTracerProvider:
    instrumentations stop propagating context for one of those)."""

    def __init__(self, provider: SdkTracerProvider) -> None:
        self.provider = provider

    def get_tracer(self, instrumenting_module_name: str, instrumenting_library_version: str | None = None,
                   schema_url: str | None = None, attributes: Attributes = None) -> trace.Tracer:
        real = self.provider.get_tracer(instrumenting_module_name, instrumenting_library_version, schema_url,
                                        attributes)
        return _HollowWhileUnheardTracer(real) if isinstance(real, SdkTracer) else real


def hollow_while_unheard(provider: Any) -> HollowWhileUnheard | None:
    """``provider`` wrapped, if it is the SDK's (another kind is left as it is)."""
    if isinstance(provider, HollowWhileUnheard):
        return provider
    return HollowWhileUnheard(provider) if isinstance(provider, SdkTracerProvider) else None


class _HollowWhileUnheardTracer(trace.Tracer):
    def __init__(self, real: SdkTracer) -> None:
        self._real = real

    def _heard(self) -> bool:
        """A processor listens, or the SDK counts spans (its own metrics, SDK 1.4x), or the tracer is turned off
        (the SDK's own span is then already hollow and cheap): the SDK makes the span. An SDK we do not know is
        taken to listen."""
        real = self._real
        processors = getattr(real.span_processor, "_span_processors", None)
        metrics = getattr(real, "_tracer_metrics", None)
        return (not isinstance(processors, tuple) or bool(processors)
                or metrics is not None and type(metrics).__name__ != "NoOpTracerMetrics"
                or hasattr(real, "_is_enabled") and not real._is_enabled())

    def start_span(self, name: str, context: context_api.Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
                   attributes: Attributes = None, links: Sequence[trace.Link] | None = (),
                   start_time: int | None = None, record_exception: bool = True,
                   set_status_on_exception: bool = True) -> trace.Span:
        if self._heard():
            return self._real.start_span(name, context, kind, attributes, links, start_time, record_exception,
                                         set_status_on_exception)
        return self._hollow(name, context, kind, attributes, links)

    def start_as_current_span(self, name: str, context: context_api.Context | None = None,
                              kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes = None,
                              links: Sequence[trace.Link] | None = (), start_time: int | None = None,
                              record_exception: bool = True, set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> Any:
        if self._heard():
            return self._real.start_as_current_span(name, context, kind, attributes, links, start_time,
                                                    record_exception, set_status_on_exception, end_on_exit)
        current = trace.get_current_span()
        if context is None and self._real.sampler is DEFAULT_ON and _hollow_and_local(current):
            return nullcontext(current)  # a child would differ from it by a span id nobody hears, only
        return trace.use_span(self._hollow(name, context, kind, attributes, links), end_on_exit=True)

    def _hollow(self, name: str, context: context_api.Context | None, kind: SpanKind, attributes: Attributes,
                links: Sequence[trace.Link] | None) -> trace.Span:
        """The span context the SDK would have made, on a span that records nothing."""
        real = self._real
        parent = trace.get_current_span(context).get_span_context()
        ids = real.id_generator
        if parent.is_valid:
            trace_id, random_id = parent.trace_id, parent.trace_flags & _RANDOM_TRACE_ID
        else:
            trace_id = ids.generate_trace_id()
            random_id = _RANDOM_TRACE_ID if getattr(ids, "is_trace_id_random", bool)() else 0
        if real.sampler is DEFAULT_ON:  # the SDK's default, decided here as it decides: the parent's choice, or yes
            sampled, trace_state = (parent.trace_flags.sampled, parent.trace_state) if parent.is_valid else (True, None)
        else:
            result = real.sampler.should_sample(context, trace_id, name, kind, attributes, links or ())
            sampled, trace_state = result.decision.is_sampled(), result.trace_state
        flags = (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT) | random_id
        return NonRecordingSpan(SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                                            trace_flags=TraceFlags(flags), trace_state=trace_state))


def _hollow_and_local(span: trace.Span) -> bool:
    context = span.get_span_context()
    return not span.is_recording() and context.is_valid and not context.is_remote
