"""Connection-pool numbers of one registry: the pools observed, read at collection, and the
wait/use histograms their hooks feed.

Sync SQLAlchemy engines check connections out in whatever thread runs the query, so the
event-fed numbers (pending, timeouts, wait and use times) are updated under locks.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import SharedHistogramGroup

logger = logging.getLogger(__name__)


def pool_key(name: str) -> tuple:
    """A pool series' attribute values, in the order of ``POOL_WAIT_TIME.attributes``."""
    return (name,)


@dataclass
class PoolReading:
    used: int | None = None
    idle: int | None = None
    max: int | None = None
    idle_max: int | None = None
    idle_min: int | None = None
    pending: int | None = None
    timeouts: int | None = None


class ObservedPool:
    """One pool: a weak reference, how to read it, and its event-fed numbers."""

    def __init__(self, name: str, target: Any, read: Callable[[Any], PoolReading | None]) -> None:
        self.name = name
        try:
            self._target: Callable[[], Any] = weakref.ref(target)
        except TypeError:  # asyncpg's Pool has no __weakref__: held strongly, dropped once it closes
            self._target = lambda: target
        self._read = read
        self.pending = 0
        self.timeouts = 0
        self.lock = threading.Lock()
        self.attributes = {c.POOL_NAME: name}

    def add_pending(self, change: int) -> None:
        with self.lock:
            self.pending += change

    def add_timeout(self) -> None:
        with self.lock:
            self.timeouts += 1

    def reading(self) -> PoolReading | None:
        target = self._target()
        return None if target is None else self._read(target)  # None: the pool is gone


class PoolStats:
    def __init__(self, max_series: int = 2000) -> None:
        self.pools: list[ObservedPool] = []
        self.wait = SharedHistogramGroup({"wait": c.POOL_WAIT_TIME}, max_series)
        self.use = SharedHistogramGroup({"use": c.POOL_USE_TIME}, max_series)
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def add(self, pool: ObservedPool) -> None:
        with self._lock:
            self.pools = [p for p in self.pools if p.name != pool.name] + [pool]

    def histogram_groups(self) -> tuple[SharedHistogramGroup, ...]:
        return (self.wait, self.use)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {c.POOL_COUNT: self.observe_count, c.POOL_MAX: lambda _: self._field("max"),
                c.POOL_IDLE_MAX: lambda _: self._field("idle_max"), c.POOL_IDLE_MIN: lambda _: self._field("idle_min"),
                c.POOL_PENDING: lambda _: self._field("pending"), c.POOL_TIMEOUTS: lambda _: self._field("timeouts")}

    def reset(self) -> None:
        self._lock = threading.Lock()
        self.wait.reset()
        self.use.reset()

    def _readings(self) -> Iterator[tuple[ObservedPool, PoolReading]]:
        for pool in list(self.pools):
            try:
                reading = pool.reading()
            except Exception:  # a disposed pool, a driver change: skip it, keep the others
                if pool.name not in self._failed:
                    self._failed.add(pool.name)
                    logger.warning("otel_llm_metrics: cannot read pool %r; skipping it", pool.name, exc_info=True)
                continue
            if reading is None:
                with self._lock:
                    self.pools = [p for p in self.pools if p is not pool]
                continue
            yield pool, reading

    def _field(self, name: str) -> Iterator[Observation]:
        for pool, reading in self._readings():
            value = getattr(reading, name)
            if value is not None:
                yield Observation(value, pool.attributes)

    def observe_count(self, _: CallbackOptions) -> Iterator[Observation]:
        for pool, reading in self._readings():
            for state, value in (("used", reading.used), ("idle", reading.idle)):
                if value is not None:
                    yield Observation(value, {**pool.attributes, c.POOL_STATE: state})
