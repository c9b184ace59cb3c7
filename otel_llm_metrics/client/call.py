"""One HTTP attempt of an upstream LLM call, and the operation (the attempts of one SDK call) it belongs to.

At the wire every retry is a new attempt. The ``openai`` and ``anthropic`` SDKs say on each one how many
came before (``x-stainless-retry-count``), and retry in the same task or thread. So a failed attempt
that such an SDK may retry (408, 409, 429, 5xx, a timeout, a lost connection) stays pending in the
context: if the next attempt there is a retry, the operation goes on from the first attempt's start;
otherwise (a new call, the served request's end, the process's last push) it is recorded as failed.
Other failures, and successes, end the operation at once. Every attempt is counted.

Nothing here raises into the SDK: ``Attempt`` catches its own errors and logs the first.
"""

from __future__ import annotations

import logging
import weakref
import zlib
from contextvars import ContextVar
from time import perf_counter

from .. import catalogue as c
from ..llm.endpoints import Endpoint
from ..llm.exchange import LlmExchange
from ..llm.link import CURRENT
from ..llm.stats import GenAiStats, attempt_key, rate_limit_key
from ..llm.tenant import current as outside_tenant
from ..series import Histogram
from .headers import answer_headers, retry_count

logger = logging.getLogger(__name__)
TIMEOUT, CONNECTION_ERROR, ABANDONED = "timeout", "connection_error", "abandoned"
_CONNECTION_ERRORS = frozenset(("ConnectError", "ReadError", "WriteError", "CloseError", "NetworkError",
                                "RemoteProtocolError", "LocalProtocolError", "ProtocolError", "ProxyError",
                                "ConnectionError", "ConnectionResetError", "ConnectionRefusedError",
                                "ClientConnectorError", "ServerDisconnectedError", "ClientOSError"))
_CANCELLED = frozenset(("CancelledError", "Cancelled", "GeneratorExit"))
_RETRYABLE_STATUSES = frozenset((408, 409, 429))
_PENDING: ContextVar[Attempt | None] = ContextVar("otel_llm_metrics_pending_attempt", default=None)
# Set while a measured attempt is being sent: a library underneath (LiteLLM's httpx client sends through
# an aiohttp transport) sends the same request, which must not count again.
SENDING: ContextVar[bool] = ContextVar("otel_llm_metrics_sending", default=False)
_ALL_PENDING: weakref.WeakSet[Attempt] = weakref.WeakSet()  # flushed at the process's last push
_logged = False


def error_type_of(error: BaseException) -> str:
    """A bounded error.type for an exception raised while calling upstream."""
    name = type(error).__name__
    if name in _CANCELLED:
        return ABANDONED
    if "Timeout" in name or isinstance(error, TimeoutError):
        return TIMEOUT
    if name in _CONNECTION_ERRORS or isinstance(error, ConnectionError):
        return CONNECTION_ERROR
    return c.OTHER


def flush_pending() -> None:
    """Record every operation still waiting to learn whether its SDK retries it (at the last push)."""
    for attempt in list(_ALL_PENDING):
        attempt.end_operation()


class Attempt:
    """One HTTP attempt, recorded once, when its body ends, it fails, or its reader closes it early."""

    __slots__ = ("exchange", "stats", "address", "port", "started", "attempt_started", "attempt_ended", "link",
                 "retries", "error_type", "ended", "recorded", "content_seen", "last_content_at", "gaps", "decompress",
                 "__weakref__")

    def __init__(self, endpoint: Endpoint, stats: GenAiStats, provider: str | None, address: str,
                 port: int, body: bytes | None, retries_header: str | None, estimate: bool) -> None:
        self.exchange = LlmExchange(endpoint, stats, provider, estimate)
        self.stats = stats
        self.address = stats.hosts(address)
        self.port = port
        self.attempt_started = self.started = self.attempt_ended = perf_counter()
        self.retries = retry_count(retries_header)
        self.error_type: str | None = None
        self.ended = self.recorded = False  # the attempt; the operation it ends
        self.content_seen = 0
        self.last_content_at = 0.0
        self.gaps: Histogram | None = None
        self.decompress = None
        if body:
            self.exchange.request.feed(body)
        pending = _PENDING.get()
        if pending is not None:
            _PENDING.set(None)
            if self.retries and not pending.recorded:  # this attempt retries that one: one operation
                self.started = pending.started
                pending.recorded = True
                _ALL_PENDING.discard(pending)
            else:
                pending.end_operation()
        link = self.link = CURRENT.get()
        if link is not None:
            link.call_started(self.attempt_started)
            self.exchange.tenant = stats.tenants(link.current_tenant())  # the served request's, inherited
        else:
            self.exchange.tenant = stats.tenants(outside_tenant())

    # -- the answer -----------------------------------------------------------------------------
    def answered(self, status: int, raw_headers: list[tuple[bytes, bytes]], decoded: bool = False) -> None:
        """The status line and headers arrived; ``decoded``: the library hands out the body decompressed."""
        try:
            lowered, limits, retry_after = answer_headers(raw_headers)
            exchange, stats = self.exchange, self.stats
            if status >= 400:
                self.error_type = str(status)
            provider, model = exchange.provider, stats.models(exchange.request.model)
            for resource, is_limit, value in limits:
                gauge = stats.rate_limit if is_limit else stats.rate_limit_remaining
                gauge.set(rate_limit_key(provider, self.address, self.port, model, resource), value)
            if retry_after is not None:
                stats.retry_after.record((provider, self.address, self.port), "wait", retry_after)
            if decoded:
                lowered = [(name, value) for name, value in lowered if name != b"content-encoding"]
            exchange.response_started(lowered)
            if exchange.parser is None:  # compressed: read what the SDK reads, decompressed apart
                self.decompress = _decompressor(lowered)
                if self.decompress is not None:
                    exchange.response_started([(b"content-type", _content_type(lowered))])
        except Exception:
            self._log()

    def chunk(self, data: bytes) -> None:
        """A body chunk as the SDK reads it; the SDK gets it unchanged whatever happens here."""
        parser = self.exchange.parser
        if parser is None or not data:
            return
        try:
            if self.decompress is not None:
                data = self.decompress.decompress(data)
            parser.feed(data)
            seen = parser.content_events
            if seen != self.content_seen:
                now = perf_counter()
                if self.content_seen:
                    gaps = self.gaps
                    if gaps is None:
                        gaps = self.gaps = Histogram(c.GEN_AI_CLIENT_TPOC.buckets)
                    gaps.record(now - self.last_content_at)
                elif self.link is not None:
                    self.link.first_chunk((parser.first_token_at or now) - self.attempt_started)
                self.content_seen, self.last_content_at = seen, now
        except Exception:
            self.exchange.parser = None
            self._log()

    # -- the end --------------------------------------------------------------------------------
    def failed(self, error: BaseException) -> None:
        """The attempt raised (before or during its body): record it with its error type."""
        if self.error_type is None:  # an HTTP status already says what went wrong
            self.error_type = error_type_of(error)
        self.end()

    def end(self, body_complete: bool = True) -> None:
        """The body ended, or (``body_complete=False``) its reader closed it before the end."""
        if self.ended:
            return
        self.ended = True
        try:
            ended = perf_counter()
            if not body_complete and self.error_type is None and not self._answer_complete():
                self.error_type = ABANDONED
            if self.link is not None:
                self.link.call_ended(ended)
            exchange = self.exchange
            self.stats.attempts.add(attempt_key(exchange.endpoint.operation, exchange.provider,
                                                self.stats.models(exchange.request.model), self.address, self.port,
                                                self.error_type))
            self.attempt_ended = ended
            if self.error_type is not None and self.retries is not None and self._retryable():
                # the operation may go on in a retry: the next attempt here decides
                _PENDING.set(self)
                _ALL_PENDING.add(self)
                if self.link is not None:
                    if self.link.pending is None:
                        self.link.pending = []
                    self.link.pending.append(self)
                return
        except Exception:
            self._log()
        self.end_operation()

    def end_operation(self) -> None:
        """No retry follows: record the operation as its last attempt ended."""
        if self.recorded:
            return
        self.recorded = True
        _ALL_PENDING.discard(self)
        try:
            self._record(self.attempt_ended)
        except Exception:
            self._log()

    def _record(self, ended: float) -> None:
        if self.error_type == ABANDONED:  # the caller left: no operation duration, what was read is kept
            self.exchange.record_call(self.started, self.attempt_started, ended, ABANDONED, self.address, self.port,
                                      None, duration=False)
            return
        self.exchange.record_call(self.started, self.attempt_started, ended, self.error_type, self.address,
                                  self.port, self.gaps)

    def _answer_complete(self) -> bool:
        """Whether the answer had ended: SDKs stop reading at a stream's last event (``[DONE]``) and close."""
        parser = self.exchange.parser
        if parser is None:
            return False
        parser.finish()
        return (parser.finish_reason is not None or parser.output_tokens is not None or parser.error_event
                or parser.done)

    def _retryable(self) -> bool:
        error = self.error_type
        if error in (TIMEOUT, CONNECTION_ERROR):
            return True
        return error is not None and error.isdigit() and (int(error) in _RETRYABLE_STATUSES or int(error) >= 500)

    @staticmethod
    def _log() -> None:
        global _logged
        if not _logged:
            _logged = True
            logger.exception("otel_llm_metrics could not record an upstream call; further failures are not logged")


def _decompressor(headers: list[tuple[bytes, bytes]]):  # noqa: ANN202 - a zlib decompress object or None
    encoding = next((value.strip().lower() for name, value in headers if name == b"content-encoding"), b"")
    if encoding == b"gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == b"deflate":
        return zlib.decompressobj()
    return None


def _content_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    return next((value.lower() for name, value in headers if name == b"content-type"), b"")
