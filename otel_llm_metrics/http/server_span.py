"""The request's server span, made with the SDK tracer by our middleware.

No OTel ASGI middleware around us: it cost about 80 us per request, most of it above the SDK's own
floor (an INTERNAL span per send and receive, attribute collection, wrappers). Here one span per
request, started with the remote parent the global propagator finds (W3C traceparent and baggage
by default, whatever OTEL_PROPAGATORS says), named after the route once the router has matched,
with the semantic conventions' attributes, its status from the response, and an exception recorded
once.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..catalogue import OTHER

_LOCAL = frozenset(("host", "user-agent"))  # headers that carry no context: nothing to extract


def headers_read() -> frozenset[bytes]:
    """The request headers the span needs: the global propagator's fields (traceparent, tracestate,
    baggage by default; b3 or others when OTEL_PROPAGATORS says so), host and user-agent."""
    fields = propagate.get_global_textmap().fields
    return frozenset(name.lower().encode("latin-1") for name in (*fields, "host", "user-agent"))


def start(tracer: trace.Tracer, scope: dict[str, Any], method: str, carrier: dict[str, str]) -> tuple[Span, object]:
    """Start the span as the child of the caller's context and make it current; returns it and the
    token to detach with."""
    parent = propagate.extract(carrier) if carrier.keys() - _LOCAL else None  # no context sent: a new trace
    attributes: dict[str, Any] = {"http.request.method": method, "url.scheme": scope.get("scheme", "http"),
                                  "url.path": scope.get("path", ""),
                                  "network.protocol.version": scope.get("http_version", "1.1")}
    if method == OTHER:
        attributes["http.request.method_original"] = str(scope.get("method", ""))[:32]
    query = scope.get("query_string")
    if query:
        attributes["url.query"] = query.decode("latin-1")
    host = carrier.get("host")
    if host:
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        attributes["server.address"] = name or host
        if port.isdigit():
            attributes["server.port"] = int(port)
    elif scope.get("server"):
        attributes["server.address"], attributes["server.port"] = scope["server"][0], scope["server"][1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    agent = carrier.get("user-agent")
    if agent:
        attributes["user_agent.original"] = agent
    span = tracer.start_span("HTTP" if method == OTHER else method, context=parent, kind=SpanKind.SERVER,
                             attributes=attributes)
    return span, context.attach(trace.set_span_in_context(span, parent))


def outcome_attributes(status: int | None, error_type: str | None) -> dict[str, Any]:
    """The attributes only the end of a request knows (set with the route, in one call)."""
    attributes: dict[str, Any] = {}
    if status:
        attributes["http.response.status_code"] = status
    if error_type is not None:
        attributes["error.type"] = error_type
    return attributes


def end(span: Span, status: int | None, error: BaseException | None, failed: bool, end_time_ns: int) -> None:
    """The status from how the request ended, the exception once, then the end (at the last byte)."""
    if span.is_recording():
        if error is not None and failed:
            span.record_exception(error, escaped=True)
        if failed or (status or 0) >= 500:
            span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=end_time_ns)


def detach(token: object) -> None:
    context.detach(token)  # type: ignore[arg-type]
