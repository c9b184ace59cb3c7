"""An instrumented concurrency limiter, so that "requests queued for the upstream" is a real number.

    limiter = ConcurrencyLimiter(8, name="openai")
    async with limiter:
        ...call the upstream...

Waiting callers and slot holders are plain counters read at collection; the wait time goes into
a plain-Python histogram (0 when a slot was free), so an uncontended acquire costs well under a
microsecond more than the bare ``asyncio.Semaphore``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from time import perf_counter

from opentelemetry.metrics import CallbackOptions, Observation

from . import catalogue as c
from .series import HistogramGroup


class LimiterStats:
    """All limiters of one registry: weakly held, observed at collection."""

    def __init__(self, max_series: int = 2000) -> None:
        self.wait = HistogramGroup((c.LIMITER_WAIT_TIME,), max_series)
        self.limiters: weakref.WeakSet[ConcurrencyLimiter] = weakref.WeakSet()

    def reset(self) -> None:
        self.wait.reset()

    def _observe(self, attr: str) -> Iterator[Observation]:
        totals: dict[str, int] = {}
        for limiter in list(self.limiters):
            totals[limiter.name] = totals.get(limiter.name, 0) + getattr(limiter, attr)
        for name, value in totals.items():
            yield Observation(value, {c.LIMITER_NAME: name})

    def observe_waiting(self, _: CallbackOptions) -> Iterator[Observation]:
        return self._observe("waiting")

    def observe_active(self, _: CallbackOptions) -> Iterator[Observation]:
        return self._observe("active")

    def observe_limit(self, _: CallbackOptions) -> Iterator[Observation]:
        return self._observe("limit")


class ConcurrencyLimiter:
    """``async with limiter:`` admits at most ``limit`` callers at once and measures the queue."""

    def __init__(self, limit: int, name: str = "default", *, registry: object | None = None) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"ConcurrencyLimiter limit={limit!r} is not valid: expected a whole number >= 1")
        from .registry import DEFAULT_REGISTRY, Registry

        stats = (registry if isinstance(registry, Registry) else DEFAULT_REGISTRY).limiters
        self.name = name
        self.limit = limit
        self.waiting = 0
        self.active = 0
        self._semaphore = asyncio.Semaphore(limit)
        self._wait = stats.wait.get((name,))[0]
        stats.limiters.add(self)

    async def __aenter__(self) -> ConcurrencyLimiter:
        if self._semaphore.locked():
            self.waiting += 1
            started = perf_counter()
            try:
                await self._semaphore.acquire()
            finally:
                self.waiting -= 1
                self._wait.record(perf_counter() - started)
        else:
            await self._semaphore.acquire()
            self._wait.record(0.0)
        self.active += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.active -= 1
        self._semaphore.release()
