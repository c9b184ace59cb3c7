"""The numbers of every ConcurrencyLimiter of one registry: queue depth, slots, wait time."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Observation

from . import catalogue as c
from .series import HistogramGroup


class Limiter(Protocol):
    name: str
    limit: int
    waiting: int
    active: int


def limiter_key(name: str) -> tuple:
    """A limiter series' attribute values, in the order of ``LIMITER_WAIT_TIME.attributes``."""
    return (name,)


class LimiterStats:
    """All limiters of one registry: weakly held, observed at collection; waits recorded by the loop."""

    def __init__(self, max_series: int = 2000) -> None:
        self.wait = HistogramGroup({"wait": c.LIMITER_WAIT_TIME}, max_series)
        self.limiters: weakref.WeakSet[Limiter] = weakref.WeakSet()

    def histogram_groups(self) -> tuple[HistogramGroup, ...]:
        return (self.wait,)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {c.LIMITER_WAITING: lambda _: self._observe("waiting"),
                c.LIMITER_ACTIVE: lambda _: self._observe("active"),
                c.LIMITER_LIMIT: lambda _: self._observe("limit")}

    def reset(self) -> None:
        self.wait.reset()

    def _observe(self, attr: str) -> Iterator[Observation]:
        totals: dict[str, int] = {}
        for limiter in list(self.limiters):
            totals[limiter.name] = totals.get(limiter.name, 0) + getattr(limiter, attr)
        for name, value in totals.items():
            yield Observation(value, {c.LIMITER_NAME: name})
