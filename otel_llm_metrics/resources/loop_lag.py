"""Event-loop lag: how late the loop runs a callback it was asked to run ``interval`` from now.

Async LLM proxies die from a blocked loop (sync I/O, CPU-bound JSON, a slow tokenizer) long before
the CPU looks busy. One ``call_later`` chain per loop, no task, no thread: at the default 0.5 s
interval it costs a few microseconds per second. Started where the app's loop runs (lifespan
start-up or first request), stopped on shutdown or when the loop closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import HistogramGroup

logger = logging.getLogger(__name__)


class LoopLagStats:
    """The lag histogram; written only by the loop it measures."""

    def __init__(self, max_series: int = 2000) -> None:
        self.lag = HistogramGroup({"lag": c.LOOP_LAG}, max_series)

    def histogram_groups(self) -> tuple[HistogramGroup, ...]:
        return (self.lag,)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {}

    def reset(self) -> None:
        self.lag.reset()


class LoopLagMonitor:
    def __init__(self, stats: LoopLagStats, interval: float = 0.5) -> None:
        self.interval = interval
        self._group = stats.lag
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._handle is not None and self._loop is loop:
            return
        self.stop()
        self._loop = loop
        self._schedule()

    def _schedule(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._handle = None
            return
        self._expected = loop.time() + self.interval
        self._handle = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        try:
            lag = max(0.0, self._loop.time() - self._expected)  # type: ignore[union-attr]
            self._group.get(()).lag.record(lag)
        except Exception:  # never disturb the loop
            logger.exception("otel_llm_metrics: event-loop lag reading failed")
        self._schedule()

    def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        loop = self._loop
        try:
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(handle.cancel)
        except RuntimeError:
            pass
