"""The served request that an upstream LLM call is made for: how long the request waited on upstream.

The served side (``http/``) opens one ``UpstreamTime`` per request while outbound calls are measured;
the calls (``client/``) add to it through a context variable. Tasks the request's code starts copy
the context, so they share the same object. Time is the union of the calls' intervals (overlapping
parallel calls count once), kept in O(1): a count of calls in flight and when it last left zero.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter

logger = logging.getLogger("otel_llm_metrics")
# One lock for every request's counts: a request's code may call upstream from several threads at once, and
# an uncontended lock costs less than allocating one per request.
_LOCK = threading.Lock()
_logged = False


class UpstreamTime:
    __slots__ = ("busy", "in_flight", "busy_since", "calls", "first_chunk_wait", "tenant", "resolve")

    def __init__(self) -> None:
        self.busy = 0.0  # seconds with at least one upstream call in flight, closed intervals only
        self.in_flight = 0
        self.busy_since = 0.0
        self.calls = 0
        self.first_chunk_wait: float | None = None  # the first streamed call's time to its first content chunk
        self.tenant: str | None = None  # for whom the request is served (uncapped; see llm/tenant.py)
        self.resolve: Callable[[], str | None] | None = None  # asks the user's resolver again, while tenant is None

    def call_started(self, at: float) -> None:
        with _LOCK:
            self.calls += 1
            if not self.in_flight:
                self.busy_since = at
            self.in_flight += 1

    def call_ended(self, at: float) -> None:
        with _LOCK:
            if self.in_flight <= 0:
                return
            self.in_flight -= 1
            if not self.in_flight:
                self.busy += at - self.busy_since

    def first_chunk(self, wait: float) -> None:
        if self.first_chunk_wait is None:
            self.first_chunk_wait = wait

    def current_tenant(self) -> str | None:
        """The request's tenant; a resolver reading state the app sets later (request.state) is asked again.

        It runs inside the app's outbound calls: if it raises, the tenant is unknown (as on the served side)
        and the call is measured all the same; it is not asked again.
        """
        if self.tenant is None and self.resolve is not None:
            try:
                self.tenant = self.resolve()
            except Exception:
                self.resolve = None
                global _logged
                if not _logged:
                    _logged = True
                    logger.exception("otel_llm_metrics: the tenant resolver raised; such requests get no tenant.id, "
                                     "and further failures are not logged")
        return self.tenant

    def waited(self, until: float | None = None) -> float:
        """Seconds spent in upstream calls so far; a call still in flight counts up to ``until``."""
        with _LOCK:
            if self.in_flight:
                return self.busy + ((until or perf_counter()) - self.busy_since)
            return self.busy


CURRENT: ContextVar[UpstreamTime | None] = ContextVar("otel_llm_metrics_upstream_time", default=None)
