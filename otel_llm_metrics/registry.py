"""Everything one process measures, in one object that providers and exporters read from.

Each area keeps its own numbers in its own stats module (HTTP, limiters, GenAI, pools, caches,
event loop); the registry only loops over them through the small ``Stats`` protocol. Writers
(the middleware, limiters, hooks) write into an area; ``runtime.Telemetry`` reads every area
through the bridge (histograms) and through SDK observable instruments (counters and gauges).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import catalogue as c
from .http.stats import HttpStats
from .limiter_stats import LimiterStats
from .llm.stats import GenAiStats
from .mcp import stats as mcp_stats
from .resources.cache_stats import CacheStats
from .resources.loop_lag import LoopLagStats
from .resources.pool_stats import PoolStats
from .series import HistogramGroup

Callback = Callable[[CallbackOptions], Iterator[Observation]]


class Stats(Protocol):
    """What the registry needs of an area's numbers."""

    def histogram_groups(self) -> Iterable[HistogramGroup]: ...

    def observers(self) -> Mapping[c.InstrumentSpec, Callback]: ...

    def reset(self) -> None: ...


class Registry:
    def __init__(self, max_series: int = 2000) -> None:
        self.http = HttpStats(max_series)
        self.limiters = LimiterStats(max_series)
        self.gen_ai = GenAiStats(max_series)
        self.pools = PoolStats(max_series)
        self.caches = CacheStats(max_series)
        self.loop_lag = LoopLagStats(max_series)
        self.mcp = mcp_stats.McpStats(max_series)
        mcp_stats.link(self.gen_ai, self.mcp)  # the httpx hook finds the MCP numbers through the GenAI ones
        self.areas: tuple[Stats, ...] = (self.http, self.limiters, self.gen_ai, self.pools, self.caches, self.loop_lag,
                                         self.mcp)
        self._meter: Meter | None = None
        self._waiting_for_meter: list[Callable[[Meter], object]] = []
        _REGISTRIES.add(self)

    def configure(self, max_series: int, max_model_names: int) -> None:
        for group in self.histogram_groups():
            group.max_series = max_series
        self.http.max_series = max_series
        self.gen_ai.configure(max_series, max_model_names)
        self.mcp.configure(max_series, max_model_names)  # tool and prompt names are capped like model names

    def histogram_groups(self) -> list[HistogramGroup]:
        return [group for area in self.areas for group in area.histogram_groups()]

    def reset(self) -> None:
        for area in self.areas:
            area.reset()

    def with_meter(self, register: Callable[[Meter], object]) -> None:
        """Create instruments now if a Telemetry reads this registry, else as soon as one does."""
        if self._meter is not None:
            register(self._meter)
        else:
            self._waiting_for_meter.append(register)

    def register_observables(self, meter: Meter) -> None:
        """Create the SDK observable instruments; their callbacks run only at collection."""
        for area in self.areas:
            for spec, callback in area.observers().items():
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
