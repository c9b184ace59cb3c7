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
from time import perf_counter

from .limiter_stats import limiter_key
from .registry import DEFAULT_REGISTRY, Registry


class ConcurrencyLimiter:
    """``async with limiter:`` admits at most ``limit`` callers at once and measures the queue."""

    def __init__(self, limit: int, name: str = "default", *, registry: Registry | None = None) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"ConcurrencyLimiter limit={limit!r} is not valid: expected a whole number >= 1. "
                             "Fix: e.g. ConcurrencyLimiter(8, name=...)")
        stats = (registry or DEFAULT_REGISTRY).limiters
        self.name = name
        self.limit = limit
        self.waiting = 0
        self.active = 0
        self._semaphore = asyncio.Semaphore(limit)
        self._wait = stats.wait.get(limiter_key(name)).wait
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
