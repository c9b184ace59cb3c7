"""Everything one process measures, in one object that providers and exporters read from.

The middleware and limiters write into a registry; ``runtime.Telemetry`` reads it through the
bridge (histograms) and through SDK observable instruments (counters and gauges).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable

from opentelemetry.metrics import Meter

from . import catalogue as c
from .http.stats import HttpStats
from .limiter import LimiterStats
from .llm.stats import GenAiStats
from .resources.caches import CacheStats
from .resources.loop_lag import lag_group
from .resources.pools import PoolStats
from .series import HistogramGroup


class Registry:
    def __init__(self, max_series: int = 2000) -> None:
        self.http = HttpStats(max_series)
        self.limiters = LimiterStats(max_series)
        self.gen_ai = GenAiStats(max_series)
        self.pools = PoolStats(max_series)
        self.caches = CacheStats(max_series)
        self.loop_lag = lag_group(max_series)
        self._meter: Meter | None = None
        self._waiting_for_meter: list[Callable[[Meter], object]] = []
        _REGISTRIES.add(self)

    def configure(self, max_series: int, max_model_names: int) -> None:
        for group in self.histogram_groups():
            group.max_series = max_series
        self.http.max_series = max_series
        self.gen_ai.models.max_values = max_model_names

    def histogram_groups(self) -> Iterable[HistogramGroup]:
        return (self.http.requests, self.http.streams, self.limiters.wait, *self.gen_ai.groups(), self.loop_lag,
                self.pools.wait, self.pools.use, self.caches.durations)

    def reset(self) -> None:
        self.http.reset()
        self.limiters.reset()
        self.gen_ai.reset()
        self.pools.reset()
        self.caches.reset()
        self.loop_lag.reset()

    def with_meter(self, register: Callable[[Meter], object]) -> None:
        """Create instruments now if a Telemetry reads this registry, else as soon as one does."""
        if self._meter is not None:
            register(self._meter)
        else:
            self._waiting_for_meter.append(register)

    def register_observables(self, meter: Meter) -> None:
        """Create the SDK observable instruments; their callbacks run only at collection."""
        pools = self.pools
        sources = (
            (c.ACTIVE_REQUESTS, self.http.observe_active),
            (c.ACTIVE_REQUESTS_PEAK, self.http.observe_peak),
            (c.ROUTE_ACTIVE_REQUESTS, self.http.observe_route_active),
            (c.ROUTE_ACTIVE_REQUESTS_PEAK, self.http.observe_route_peak),
            (c.STREAMS, self.http.observe_streams),
            (c.LIMITER_WAITING, self.limiters.observe_waiting),
            (c.LIMITER_ACTIVE, self.limiters.observe_active),
            (c.LIMITER_LIMIT, self.limiters.observe_limit),
            (c.POOL_COUNT, pools.observe_count), (c.POOL_MAX, pools.observe_max),
            (c.POOL_IDLE_MAX, pools.observe_idle_max), (c.POOL_IDLE_MIN, pools.observe_idle_min),
            (c.POOL_PENDING, pools.observe_pending), (c.POOL_TIMEOUTS, pools.observe_timeouts),
            *self.caches.observers().items(),
        )
        for spec, callback in sources:
            c.observe(meter, spec, callback)
        self._meter = meter
        waiting, self._waiting_for_meter = self._waiting_for_meter, []
        for register in waiting:
            register(meter)


_REGISTRIES: weakref.WeakSet[Registry] = weakref.WeakSet()
DEFAULT_REGISTRY = Registry()


def _reset_all_after_fork() -> None:
    for registry in list(_REGISTRIES):
        registry.reset()


os.register_at_fork(after_in_child=_reset_all_after_fork)
