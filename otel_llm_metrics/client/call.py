"""One HTTP attempt of an upstream LLM call, and the operation (the attempts of one SDK call) it belongs to.

At the wire every retry is a new attempt. The ``openai`` and ``anthropic`` SDKs retry inside one call of their
base client, which opens an ``operation.Operation`` for its duration: an attempt there that failed in a way the
SDK may retry (408, 409, 429, 5xx, a timeout, a lost connection) is held by it, continued by the call's next
attempt (the operation then runs from the first attempt's start) or recorded as failed when the call returns
or raises. Attempts outside such a call (plain httpx, other SDKs), other failures and successes end their
operation at once. Every attempt is counted.

Nothing here raises into the SDK: ``Attempt`` catches its own errors and logs the first.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import weakref
from contextvars import ContextVar, Token
from time import perf_counter
from typing import Any

from .. import catalogue as c
from ..error_types import ABANDONED, CONNECTION_ERROR, TIMEOUT, error_type_of
from ..llm.endpoints import Endpoint
from ..llm.exchange import LlmExchange
from ..llm.link import CURRENT
from ..llm.stats import GenAiStats, RateLimit
from ..llm.tenant import OUTSIDE
from ..series import Histogram
from . import operation as operations
from .headers import Answer, HeaderItems

logger = logging.getLogger(__name__)
_RETRYABLE_STATUSES = frozenset((408, 409, 429))
_FOLD = 1024  # gaps between chunks kept as a list up to this, then folded into the attempt's histogram
_RECORDING = threading.Lock()  # claims an operation's one recording (its end, the call's end, the last push)
_logged = False


class Sending:
    """Whether this very task or thread is sending a measured attempt (``get``), like a ContextVar of a bool.

    A library underneath (LiteLLM's httpx client sends through an aiohttp transport) sends the same request,
    which must not count again. A plain context variable would also be inherited by every task or thread
    context copied during the send, whose own later calls would then go unmeasured: the value names its
    owner (the asyncio task, else the thread), and only the owner sees it set.
    """

    __slots__ = ("_owner",)

    def __init__(self) -> None:
        self._owner: ContextVar[Any] = ContextVar("otel_llm_metrics_sending", default=None)

    def get(self) -> bool:
        owner = self._owner.get()
        return owner is not None and owner == _owner()

    def set(self, value: bool) -> Token:
        return self._owner.set(_owner() if value else None)

    def reset(self, token: Token) -> None:
        self._owner.reset(token)


def _owner() -> object:
    """The running task (a weak reference: equal while it lives, never kept alive by a copied context), else the
    thread."""
    try:
        loop = asyncio._get_running_loop()
        if loop is not None:
            task = asyncio.current_task(loop)
            if task is not None:
                return weakref.ref(task)
        elif "trio" in sys.modules:
            lowlevel = sys.modules["trio"].lowlevel
            in_task = getattr(lowlevel, "in_trio_task", None)  # a third of the cost of raising outside a run
            if in_task is None or in_task():
                return weakref.ref(lowlevel.current_task())
    except (RuntimeError, TypeError):  # no trio run in this thread; a task type without weak references
        pass
    return threading.get_ident()


SENDING = Sending()


def flush_pending() -> None:
    """Record every operation still waiting to learn whether its SDK retries it (at the process's last push)."""
    operations.flush()


class Attempt:
    """One HTTP attempt, recorded once, when its body ends, it fails, or its reader closes it early.

    Per call it keeps plain attributes only: the answer's headers are read once (``headers.Answer``), the gaps
    between content chunks are appended to a list, and everything is recorded at the end through the call's
    bound record (``ClientRecord``), under one lock.
    """

    __slots__ = ("exchange", "stats", "address", "port", "started", "attempt_started", "attempt_ended", "link",
                 "operation", "error_type", "ended", "recorded", "held", "counted", "content_seen",
                 "last_content_at", "gaps", "gap_histogram", "encoded", "limits", "retry_after", "__weakref__")

    def __init__(self, endpoint: Endpoint, stats: GenAiStats, provider: str | None, address: str,
                 port: int, body: bytes | None, estimate: bool) -> None:
        exchange = self.exchange = LlmExchange(endpoint, stats, provider, estimate)
        self.stats = stats
        self.address = address  # capped (stats.hosts) when the call's record is bound
        self.port = port
        self.attempt_started = self.started = self.attempt_ended = perf_counter()
        self.error_type: str | None = None
        self.ended = self.recorded = False  # the attempt; the operation it ends
        self.held = self.counted = False  # held by its SDK call (may be retried); counted as an attempt
        self.content_seen = 0
        self.last_content_at = 0.0
        self.gaps: list[float] | None = None  # seconds between content chunks, not yet in gap_histogram
        self.gap_histogram: Histogram | None = None
        self.encoded: tuple[bytes, HeaderItems] | None = None  # a content-encoded answer's content type, headers
        self.limits: list[RateLimit] | None = None  # rate-limit headers: ((resource, is_limit), value)
        self.retry_after: float | None = None
        if body:
            exchange.request.feed(body)
        operation = self.operation = operations.CURRENT.get()
        if operation is not None and operation.held is not None:
            previous = operation.take()
            if previous is not None:  # this attempt is the SDK's retry of that one: one operation
                self.started = previous.started  # type: ignore[attr-defined]
        link = self.link = CURRENT.get()
        if link is not None:
            link.call_started(self.attempt_started)
            tenant = link.current_tenant()  # the served request's, inherited; never raises
        else:
            tenant = OUTSIDE.get()
        if tenant is not None:
            exchange.tenant = stats.tenants(tenant)

    # -- the answer -----------------------------------------------------------------------------
    def answered(self, status: int, raw_headers: HeaderItems, decoded: bool = False) -> bool:
        """The status line and headers arrived; ``decoded``: the library hands out the body decompressed.

        True when the body is content-encoded and not ``decoded``: it is read only if the caller's library
        shows its decoded pieces (then call ``decoding``), never decompressed a second time here. The rate
        limits and retry-after are kept for the end, when the attempt is counted.
        """
        try:
            answer = Answer(raw_headers)
            if status >= 400:
                self.error_type = str(status)
            self.limits, self.retry_after = answer.limits, answer.retry_after
            if answer.encoded and not decoded:
                self.encoded = (answer.content_type, raw_headers)
                return True
            self.exchange.start_parser(answer.content_type, raw_headers)
        except Exception:
            self._log()
        return False

    def decoding(self) -> None:
        """The body of an encoded answer will be shown to ``chunk`` as the caller's library decodes it."""
        try:
            self.exchange.start_parser(*(self.encoded or (b"", ())))
        except Exception:
            self._log()

    def chunk(self, data: bytes) -> None:
        """A body chunk as the SDK reads it (decoded); the SDK gets it unchanged whatever happens here."""
        parser = self.exchange.parser
        if parser is None or not data:
            return
        try:
            parser.feed(data)
            seen = parser.content_events
            if seen != self.content_seen:
                now = perf_counter()
                if self.content_seen:
                    gaps = self.gaps
                    if gaps is None:
                        self.gaps = [now - self.last_content_at]
                    else:
                        gaps.append(now - self.last_content_at)
                        if len(gaps) >= _FOLD:
                            self._fold()
                elif self.link is not None:
                    self.link.first_chunk((parser.first_token_at or now) - self.attempt_started)
                self.content_seen, self.last_content_at = seen, now
        except Exception:
            self.exchange.parser = None
            self._log()

    def _fold(self) -> Histogram | None:
        """The gaps gathered so far, in this attempt's own histogram (memory stays bounded on long streams)."""
        gaps, self.gaps = self.gaps, None
        histogram = self.gap_histogram
        if gaps:
            if histogram is None:
                histogram = self.gap_histogram = Histogram(c.GEN_AI_CLIENT_TPOC.buckets)
            histogram.record_many(gaps)
        return histogram

    # -- the end --------------------------------------------------------------------------------
    def failed(self, error: BaseException) -> None:
        """The attempt raised (before or during its body): record it with its error type."""
        if self.error_type is None:  # an HTTP status already says what went wrong
            self.error_type = error_type_of(error)
        self.end()

    def end(self, body_complete: bool = True) -> None:
        """The body ended, or (``body_complete=False``) its reader closed it before the end.

        Usually the operation ends with it: the attempt and the operation are recorded together, under one
        lock. An attempt its SDK call may retry is counted now and held (``operation.Operation.hold``).
        """
        if self.ended:
            return
        self.ended = True
        try:
            ended = self.attempt_ended = perf_counter()
            if not body_complete and self.error_type is None and not self._answer_complete():
                self.error_type = ABANDONED
            if self.link is not None:
                self.link.call_ended(ended)
            operation = self.operation
            if self.error_type is not None and operation is not None and self._retryable():
                self.counted = self.held = True
                self.exchange.client_record(self.error_type, self.address, self.port).count_attempt(
                    self.error_type, self.limits, self.retry_after)
                if operation.hold(self):
                    return  # its SDK call may retry it: the call's next attempt or its end decides
        except Exception:
            self._log()
        self.end_operation()

    def end_operation(self) -> None:
        """No retry follows: record the operation as its last attempt ended (exactly once, whoever calls).

        Only a held attempt can be claimed by another thread (its call's end, ``flush``): others need no lock.
        """
        if self.held:
            with _RECORDING:
                if self.recorded:
                    return
                self.recorded = True
        elif self.recorded:
            return
        else:
            self.recorded = True
        try:
            self._record(self.attempt_ended)
        except Exception:
            self._log()

    def _record(self, ended: float) -> None:
        count = not self.counted
        error = self.error_type
        if error == ABANDONED:  # the caller left: no operation duration, what was read is kept
            self.exchange.record_call(self.started, self.attempt_started, ended, ABANDONED, self.address, self.port,
                                      None, False, count, error, self.limits, self.retry_after)
            return
        self.exchange.record_call(self.started, self.attempt_started, ended, error, self.address, self.port,
                                  self._fold() if self.gaps is not None else self.gap_histogram, True, count, error,
                                  self.limits, self.retry_after)

    def _answer_complete(self) -> bool:
        """Whether the answer had ended: SDKs stop reading at a stream's last event (``[DONE]``) and close."""
        parser = self.exchange.parser
        if parser is None:
            return False
        parser.finish()
        # A stream's usage may come first (Anthropic's message_start carries output_tokens): only its end counts.
        return parser.answer_ended or (parser.output_tokens is not None and not parser.streamed_format)

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
