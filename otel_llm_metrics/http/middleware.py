"""Pure ASGI middleware: one small recorder object per request, plain Python until the end.

Per request: one ``perf_counter`` at each end, a header scan at each end, one dict lookup and
three bucket increments. Per streamed chunk: a few attribute updates in a plain (non-async)
``send`` wrapper that returns the server's own awaitable, so no extra coroutine per chunk.
Nothing here may raise into the app: bookkeeping errors are logged once and dropped.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Span

from .. import catalogue as c
from ..catalogue import CLIENT_CANCELLED, COMPLETED, ERROR, KNOWN_METHODS, OTHER, TIMEOUT
from ..config import Settings
from ..llm.endpoints import endpoint_for
from ..llm.exchange import LlmExchange
from ..llm.link import CURRENT as upstream_link
from ..llm.link import UpstreamTime
from ..llm.tenant import TenantSource
from ..log_format import REQUEST as log_request
from ..mcp import server as mcp_server
from ..registry import Registry
from . import request_id, server_span
from .lifespan import LifespanRelay, Stopping
from .metrics_page import serve_metrics_page
from .routes import route_template
from .stats import HttpStats, InFlight, request_key, stream_key

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)
slow_logger = logging.getLogger("otel_llm_metrics.slow")  # its own name: people filter or route it

SCOPE_MARK = "otel_llm_metrics"  # set on scopes we measure, so a second wrapper stays out
REQUEST_ID_HEADER = b"x-request-id"
_DISCONNECT_ERRORS = ("ClientDisconnect", "ClientDisconnected", "BrokenPipeError", "ConnectionResetError")
_CANCELLED = ("CancelledError", "Cancelled")  # a request cancelled under asyncio (uvloop) or trio


class Host(Stopping, Protocol):
    """What the middleware needs of the running instrumentation (``runtime.Telemetry``)."""

    settings: Settings
    registry: Registry
    serving: bool
    tracer_provider: Any

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]: ...


class MetricsMiddleware:
    """Measures every HTTP request of the wrapped ASGI app; passes other scopes through.

    ``telemetry`` is explicit: ``setup()``, ``Telemetry.instrument()`` and zero code pass theirs;
    by hand, ``app.add_middleware(MetricsMiddleware, telemetry=otel_llm_metrics.current_telemetry())``.
    """

    def __init__(self, app: ASGIApp, telemetry: Host) -> None:
        self.app = app
        self.telemetry = telemetry
        self.lifespan = LifespanRelay(app, telemetry)
        settings = telemetry.settings
        self.stats: HttpStats = telemetry.registry.http
        self.stats.middleware_active = True
        self.metrics_path = settings.app_metrics_path  # served here, and so never measured
        self.exact_excluded = frozenset({*(p for p in settings.excluded_routes if not p.endswith("*")),
                                         *([self.metrics_path] if self.metrics_path else [])})
        self.prefix_excluded = tuple(p[:-1] for p in settings.excluded_routes if p.endswith("*"))
        self.slow_seconds = settings.slow_request_seconds
        self.server_timing = settings.server_timing
        provider = getattr(telemetry, "tracer_provider", None)
        self.tracer = provider.get_tracer(c.SCOPE_NAME) if provider is not None else None  # ours, or theirs
        self.exemplars = getattr(telemetry, "exemplars", True)  # off under OTEL_METRICS_EXEMPLAR_FILTER=always_off
        self.span_headers = server_span.headers_read()
        self.llm_parsing = settings.llm_parsing
        self.llm_provider = settings.llm_provider
        self.estimate_output_tokens = settings.estimate_output_tokens
        self.gen_ai = self.telemetry.registry.gen_ai
        self.tenant_source = tenant_source(settings)
        self.log_request = log_request if settings.log_format == "json" else None  # JSON log lines' request
        # -- MCP hook point (otel_llm_metrics/mcp): JSON-RPC bodies are recognised by what they carry, on any path
        mcp = getattr(telemetry.registry, "mcp", None)
        if mcp is not None:
            mcp.apply(settings)
        self.mcp = mcp if mcp is not None and mcp.enabled else None
        self._logged_failure = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                return await self.lifespan(scope, receive, send)
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if SCOPE_MARK in scope or path in self.exact_excluded or (
                self.prefix_excluded and path.startswith(self.prefix_excluded)):
            if path == self.metrics_path and SCOPE_MARK not in scope:
                self.telemetry.ensure_serving()
                return await serve_metrics_page(self.telemetry.exposition, scope, send)
            return await self.app(scope, receive, send)
        if not self.telemetry.serving:
            self.telemetry.ensure_serving()
        try:
            exchange = Exchange(self, scope, receive, send)
        except Exception:  # never into the app: serve it unmeasured
            self._log_failure()
            return await self.app(scope, receive, send)
        log_token = self.log_request.set(exchange) if self.log_request is not None else None
        try:
            await self.app(scope, exchange.receive, exchange.send if exchange.llm is None else exchange.send_llm)
        except BaseException as exc:
            exchange.error = exc
            raise
        finally:
            try:
                exchange.finish()
            except Exception:  # never into the app
                self._log_failure()
            exchange.error = None  # exception -> traceback -> this frame -> exchange: break the cycle
            if exchange.context_token is not None:
                server_span.detach(exchange.context_token)
            if exchange.upstream_token is not None:
                upstream_link.reset(exchange.upstream_token)
            if log_token is not None:
                self.log_request.reset(log_token)

    def _log_failure(self) -> None:
        if not self._logged_failure:
            self._logged_failure = True
            logger.exception("otel_llm_metrics could not record a request; further failures are not logged")


class Exchange:
    """What one request did, kept in plain attributes until ``finish`` records it.

    Most fields start as class-level defaults, so a request stores only what it changes (no
    ``__slots__``: with them every field must be written in ``__init__``, on every request).
    """

    route_active: InFlight | None = None
    route: str | None = None
    status = 0  # 0 until the response starts
    request_bytes = 0
    response_bytes = 0
    chunks = 0
    first_byte = 0.0
    last_byte = 0.0  # when the final body message was handed to the server
    streamed = False
    completed = False
    disconnected = False
    error: BaseException | None = None
    span: Span | None = None
    own_span = False  # True when the span is ours to end (no outer instrumentation made one)
    context_token: object = None
    trace_id = 0
    exemplar_ids: tuple[int, int] | None = None  # (trace id, span id) of a sampled server span
    llm: LlmExchange | None = None  # set for LLM calls only
    upstream: UpstreamTime | None = None  # time in upstream LLM calls, while they are measured at the wire
    upstream_token: object = None
    raw_tenant: str | None = None  # the tenant read at the start, when there is no upstream link to hold it
    mcp: mcp_server.Served | None = None  # set once a POST body is (or may be) JSON-RPC: an MCP exchange

    def __init__(self, mw: MetricsMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.start = perf_counter()
        scope[SCOPE_MARK] = True  # a flag, not self: scope <-> recorder would be a cycle per request
        self.mw = mw
        stats = self.stats = mw.stats
        self.scope = scope
        self.app_receive = receive
        self.app_send = send
        method = scope.get("method", "")
        if method not in KNOWN_METHODS:
            method = OTHER
        self.method = method
        scheme = self.scheme = scope.get("scheme", "http")
        self.root_path = scope.get("root_path", "")
        if mw.llm_parsing and method == "POST":
            endpoint = endpoint_for(method, scope.get("path", ""))
            if endpoint is not None:
                self.llm = LlmExchange(endpoint, mw.gen_ai, mw.llm_provider, mw.estimate_output_tokens)
        if mw.gen_ai.measured_at_the_wire:
            self.upstream = UpstreamTime()
            self.upstream_token = upstream_link.set(self.upstream)
        if mw.tenant_source is not None:
            self._read_tenant(mw.tenant_source, scope)
        incoming = None
        if mw.tracer is None:
            for name, value in scope.get("headers", ()):
                if name == REQUEST_ID_HEADER:
                    incoming = request_id.sanitised(value)
                    break
        else:
            carrier = {}  # only the headers the span reads: the propagator's fields, host, user-agent
            wanted = mw.span_headers
            for name, value in scope.get("headers", ()):
                if name == REQUEST_ID_HEADER:
                    incoming = request_id.sanitised(value)
                elif name in wanted:
                    carrier[name.decode("latin-1")] = value.decode("latin-1")
            self.span = _recording_span()  # an outer instrumentation's server span: annotate it, make none
            if self.span is None:
                self.span, self.context_token = server_span.start(mw.tracer, scope, method, carrier)
                self.own_span = True
            if self.span is not None:
                context = self.span.get_span_context()
                self.trace_id = context.trace_id
                if context.trace_flags.sampled and mw.exemplars:
                    self.exemplar_ids = (context.trace_id, context.span_id)
        if incoming is None:
            incoming = b"%032x" % self.trace_id if self.trace_id else request_id.new_request_id()
        elif self.span is not None:
            self.span.set_attribute("http.request.header.x-request-id", (incoming.decode(),))
        self.request_id = incoming
        # Last, so that a failure above leaves the in-flight gauges untouched (finish() undoes these).
        active = stats.active.get((method, scheme)) or stats.new_active((method, scheme))
        active.active += 1
        self.active = active
        in_flight = stats.in_flight = stats.in_flight + 1
        if in_flight > stats.peak:
            stats.peak = in_flight

    # -- the wrapped ASGI callables -----------------------------------------------------------
    async def receive(self) -> Message:
        message = await self.app_receive()
        kind = message.get("type")
        if kind == "http.request":
            body = message.get("body")
            if body:
                if self.mcp is not None or (not self.request_bytes and body[:1] in mcp_server.LEADS  # MCP hook point:
                                            and self.method == "POST" and self.llm is None  # a JSON body's 1st chunk
                                            and self.mw.mcp is not None):
                    self._mcp_request(body, message.get("more_body", False))
                self.request_bytes += len(body)
                if self.llm is not None:
                    self._guarded(self.llm.request.feed, body)
            if self.route_active is None and "route" in self.scope:
                self._guarded(self._route_matched)
        elif kind == "http.disconnect" and not self.completed:
            self.disconnected = True
        return message

    def send(self, message: Message) -> Awaitable[None]:
        if message.get("more_body"):  # a chunk of a stream (only body messages carry more_body): kept minimal
            body = message.get("body")
            if body and self.chunks:
                self.chunks += 1
                self.response_bytes += len(body)
            else:
                self._first_chunk(body)
            return self.app_send(message)
        kind = message.get("type")
        if kind == "http.response.body":  # the last (or only) body message
            self.last_byte = now = perf_counter()  # the measurement ends here, not when the app returns
            body = message.get("body")
            if body:
                if not self.chunks:
                    self.first_byte = now
                self.response_bytes += len(body)
                self.chunks += 1
            self.completed = True
            if self.span is not None and not self.own_span:  # an outer span may end on this message
                self._guarded(self._annotate_span, COMPLETED)
        elif kind == "http.response.start":
            try:
                self._response_start(message)
            except Exception:  # never into the app
                self.mw._log_failure()
        elif kind == "http.response.pathsend":
            self.completed = True
        return self.app_send(message)

    def send_llm(self, message: Message) -> Awaitable[None]:
        """``send`` for LLM calls: the parser sees each body chunk first (other streams skip this)."""
        parser = self.llm.parser  # type: ignore[union-attr]
        if parser is not None and message.get("type") == "http.response.body":
            body = message.get("body")
            if body:
                try:  # inline, not a method: it runs per chunk
                    parser.feed(body)
                except Exception:  # a parser bug stops parsing, never the response
                    self.llm.parser = None  # type: ignore[union-attr]
                    self.mw._log_failure()
        return self.send(message)

    # -- milestones ---------------------------------------------------------------------------
    def _first_chunk(self, body: bytes | None) -> None:
        """The first chunk of a stream (or an empty one): mark the stream, time the first byte."""
        self.streamed = True
        if body:
            self.first_byte = perf_counter()
            self.chunks = 1
            self.response_bytes += len(body)
    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run a bookkeeping step that must never raise into the app."""
        try:
            step(*args)
        except Exception:
            self.mw._log_failure()

    def route_now(self) -> str | None:
        """The route template as far as known now: for log lines made before the response starts."""
        if self.route is None and "route" in self.scope:
            return route_template(self.scope, self.root_path)
        return self.route

    def _route_matched(self) -> None:
        """The router has run (or never will): count the request against its route from now on."""
        route = self.route = route_template(self.scope, self.root_path) if "route" in self.scope else None
        stats = self.stats
        gauge = stats.route_active.get((self.method, route)) or stats.new_route_active((self.method, route))
        active = gauge.active = gauge.active + 1
        if active > gauge.peak:
            gauge.peak = active
        self.route_active = gauge

    def _response_start(self, message: Message) -> None:
        self.status = message.get("status", 0)
        if self.route_active is None:
            self._route_matched()
        headers = message.get("headers") or ()
        has_length = has_id = False
        for name, _ in headers:
            if name == b"content-length":
                has_length = True
            elif name == REQUEST_ID_HEADER:
                has_id = True
        if has_length and self.mw.server_timing:
            tenths_ms = int((perf_counter() - self.start) * 10_000)
            timing = (b"server-timing", b"app;dur=%d.%d" % divmod(tenths_ms, 10))
            message["headers"] = [*headers, timing] if has_id else [*headers, (REQUEST_ID_HEADER, self.request_id),
                                                                    timing]
        elif not has_id:
            message["headers"] = [*headers, (REQUEST_ID_HEADER, self.request_id)]
        if self.llm is not None:
            self.llm.response_started(headers)
        if self.method == "DELETE" and self.mw.mcp is not None:  # MCP hook point: the end of a session
            mcp_server.deleted(self.mw.mcp, self.scope, self.status, perf_counter())

    def _mcp_request(self, body: bytes, more: bool) -> None:
        """MCP hook point: a request body chunk of a POST that is (or may turn out to be) JSON-RPC. Once it is,
        the server's send goes through the MCP reader (other requests never pay for it)."""
        try:
            served = self.mcp
            if served is None:
                verdict = mcp_server.sniff(body, more)
                if not verdict:
                    return
                served = self.mcp = mcp_server.begin(self.mw.mcp, self.scope, self.start, body, more, verdict)
                if served is None:
                    return
            else:
                served.request(body, more)
            if served.decided and served.live and not served.send_installed:
                self.app_send = served.wrap(self.app_send)
            elif not served.live and not served.send_installed:
                self.mcp = None
        except Exception:  # never into the app
            self.mcp = None
            self.mw._log_failure()

    def finish(self) -> None:
        """Record everything once; called exactly once, whatever happened.

        The three request histograms are updated inline rather than through ``Histogram.record``:
        measured in benchmarks/bench_asgi.py, the three method calls cost 0.2-0.3 us more per request.
        """
        end = self.last_byte or perf_counter()  # Starlette's StreamingResponse returns 8-20 ms after its last byte
        duration = end - self.start
        stats = self.stats
        self.active.active -= 1
        stats.in_flight -= 1
        if self.route_active is None:
            self._route_matched()
        self.route_active.active -= 1  # type: ignore[union-attr]
        status: int | None = self.status or 500  # raised before headers: the server answers 500
        error = self.error
        if error is None:
            error_type = str(status) if status >= 500 else None  # type: ignore[operator]
        else:
            if not self.status and _is_disconnect(error):
                status = None  # the client left before any answer: no status code was sent
            error_type = _error_type(error)
        method, route = self.method, self.route
        upstream = self.upstream
        if upstream is not None:
            tenant = upstream.tenant if upstream.resolve is None else upstream.current_tenant()
        else:
            tenant = self.raw_tenant
            if tenant is None and self.mw.tenant_source is not None:
                tenant = self.mw.tenant_source.from_code(self.scope)  # state the app set while serving
        if tenant is not None:
            tenant = self.mw.gen_ai.tenants(tenant)
        key = request_key(method, self.scheme, route, status, error_type, tenant)
        series = stats.requests.series.get(key) or stats.requests.get(key)
        h = series.duration
        # h.total may be an ExponentialSum (a reader wants exponential histograms): then += also fills its buckets.
        h.counts[bisect_left(h.bounds, duration)] += 1
        h.total += duration
        if duration < h.min:
            h.min = duration
        if duration > h.max:
            h.max = duration
        if self.exemplar_ids is not None:
            h.exemplar(duration, *self.exemplar_ids)
        h, size = series.request_size, self.request_bytes
        h.counts[bisect_left(h.bounds, size)] += 1
        h.total += size
        h, size = series.response_size, self.response_bytes
        h.counts[bisect_left(h.bounds, size)] += 1
        h.total += size
        # How the exchange ended matters to streams, the LLM record and the span: decide it once.
        outcome = self._outcome() if self.streamed or self.llm is not None or self.span is not None else None
        if self.streamed:
            stream = stats.streams.get(stream_key(method, route, outcome))  # type: ignore[arg-type]
            stream.duration.record(duration)
            if self.chunks:
                stream.first_byte.record(self.first_byte - self.start)
            stream.chunks.record(self.chunks)
            stream.size.record(self.response_bytes)
            slow_measure = (self.first_byte or end) - self.start
        else:
            slow_measure = duration
        if self.mcp is not None:  # MCP hook point: operations never answered end with the exchange
            self.mcp.finish(end, error, self.disconnected)
        if self.llm is not None:
            self.llm.tenant = tenant
            self.llm.record(self.start, end, status, error_type, outcome == CLIENT_CANCELLED, self.streamed,
                            self.exemplar_ids)
        if upstream is not None and upstream.calls:
            self._record_overhead(upstream, route, end, duration)
        if self.span is not None:
            span = self.span
            if tenant is not None:
                span.set_attribute(c.TENANT, tenant)  # capped as on the metrics; never a raw API key
            if self.own_span:
                self._annotate_span(outcome, server_span.outcome_attributes(status, error_type))
                failed = error is not None and outcome != CLIENT_CANCELLED  # a client leaving is no server fault
                server_span.end(span, status, error, failed, _wall_ns(end))
            else:
                self._annotate_span(outcome)
        slow_seconds = self.mw.slow_seconds
        if slow_seconds and slow_measure > slow_seconds:
            self._log_slow(route, status, duration, slow_measure)

    def _read_tenant(self, source: TenantSource, scope: Scope) -> None:
        """The tenant known at the start; a resolver that answers nothing yet is asked again later."""
        tenant = source.at_start(scope)
        upstream = self.upstream
        if upstream is None:
            self.raw_tenant = tenant
            return
        upstream.tenant = tenant
        if tenant is None and source.resolver is not None:
            upstream.resolve = partial(source.from_code, scope)

    def _record_overhead(self, upstream: UpstreamTime, route: str | None, end: float, duration: float) -> None:
        """The app's own share of a request that called upstream LLMs (docs/llm.md: how, and its limits)."""
        series = self.stats.overhead.get((self.method, route))
        series.request.record(max(0.0, duration - upstream.waited(end)))
        served = self.llm.parser if self.llm is not None else None
        if served is not None and served.first_token_at and upstream.first_chunk_wait is not None:
            series.first_token.record(max(0.0, served.first_token_at - self.start - upstream.first_chunk_wait))

    def _outcome(self) -> str:
        error = self.error
        if self.disconnected or (error is not None and (_is_disconnect(error)
                                                        or type(error).__name__ in _CANCELLED)):
            return CLIENT_CANCELLED
        if self.completed:
            return COMPLETED
        if error is not None and ("Timeout" in type(error).__name__ or isinstance(error, TimeoutError)):
            return TIMEOUT
        return ERROR

    def _annotate_span(self, outcome: str | None, attributes: dict[str, Any] | None = None) -> None:
        """Once per request: the route (an outer span cannot know it) and, for streams, milestones;
        every attribute in one call (each call takes the span's lock and checks every value)."""
        span, self.span = self.span, None
        if span is None or not span.is_recording():
            return
        attributes = attributes if attributes is not None else {}
        # The conventions' name: "{method} {route}", "{method}" with no route (never the raw path: it has no
        # bound and may hold decoded CR/LF), "HTTP" for a method outside the known set.
        method = "HTTP" if self.method == OTHER else self.method
        if self.route is not None:
            attributes[c.ROUTE] = self.route
            span.update_name(f"{method} {self.route}")
        else:
            span.update_name(method)
        if self.streamed:
            if self.first_byte:
                span.add_event("http.stream.first_byte", timestamp=_wall_ns(self.first_byte))
            span.add_event("http.stream.end", {c.STREAM_OUTCOME: outcome, "http.stream.chunks": self.chunks,
                                               "http.response.body.size": self.response_bytes})
            attributes[c.STREAM_OUTCOME] = outcome
        span.set_attributes(attributes)
        if self.llm is not None:
            self.llm.annotate(span)

    def _log_slow(self, route: str | None, status: int | None, duration: float, measured: float) -> None:
        trace_id = f"{self.trace_id:032x}" if self.trace_id else "-"
        slow_logger.warning(
            "slow request: %s %s status=%s duration=%.3fs %s=%.3fs request_id=%s trace_id=%s",
            self.method, route or "(unmatched)", status, duration,
            "time_to_first_byte" if self.streamed else "threshold_measure", measured,
            self.request_id.decode(errors="replace"), trace_id)


def _recording_span() -> Span | None:
    span = trace.get_current_span()
    return span if span.get_span_context().is_valid else None


def _is_disconnect(error: BaseException) -> bool:
    return type(error).__name__ in _DISCONNECT_ERRORS or isinstance(error, (BrokenPipeError, ConnectionResetError))


def _error_type(error: BaseException) -> str:
    """Semantic conventions: the exception's fully qualified class name."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _wall_ns(perf: float) -> int:
    return time.time_ns() - int((perf_counter() - perf) * 1e9)


def tenant_source(settings: Settings) -> TenantSource | None:
    """Where requests' tenants come from, or None when no source is configured (the tenant() block still works)."""
    if not (settings.tenant_from or settings.tenant_header or settings.tenant_baggage
            or settings.tenant_api_key_secret):
        return None
    return TenantSource(settings.tenant_header, settings.tenant_baggage, settings.tenant_from,
                        settings.tenant_api_key_secret)
