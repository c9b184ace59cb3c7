"""Cache numbers per cache name: counters and an operation-latency histogram.

Caches are used from the event loop and from thread pools alike (a sync ``@cached`` function in
``run_in_executor``, redis-py in a worker thread), so every counter and the histogram are
updated under a lock: a lost increment would make hit ratios lie.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import SharedHistogramGroup

COUNTERS = {c.CACHE_HITS: "hits", c.CACHE_MISSES: "misses", c.CACHE_SETS: "sets", c.CACHE_DELETES: "deletes",
            c.CACHE_ERRORS: "errors"}


def cache_key(name: str, operation: str) -> tuple:
    """A cache latency series' attribute values, in the order of ``CACHE_DURATION.attributes``."""
    return (name, operation)


class CacheMetrics:
    """The counters of one named cache; every method is safe from any thread."""

    def __init__(self, name: str, durations: SharedHistogramGroup) -> None:
        self.name = name
        self.attributes = {c.CACHE_NAME: name}
        self.hits = self.misses = self.sets = self.deletes = self.errors = 0
        self._durations = durations
        self._lock = threading.Lock()

    def _add(self, counter: str, count: int) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + count)

    def hit(self, count: int = 1) -> None:
        self._add("hits", count)

    def miss(self, count: int = 1) -> None:
        self._add("misses", count)

    def set(self, count: int = 1) -> None:
        self._add("sets", count)

    def delete(self, count: int = 1) -> None:
        self._add("deletes", count)

    def error(self, count: int = 1) -> None:
        self._add("errors", count)

    def record_duration(self, operation: str, seconds: float) -> None:
        self._durations.record(cache_key(self.name, operation), "duration", seconds)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Time an operation; an exception counts as an error and propagates."""
        started = perf_counter()
        try:
            yield
        except Exception:
            self.error()
            raise
        finally:
            self.record_duration(operation, perf_counter() - started)

    def reset(self) -> None:
        self._lock = threading.Lock()  # after fork, another thread may have held it
        self.hits = self.misses = self.sets = self.deletes = self.errors = 0


class CacheStats:
    def __init__(self, max_series: int = 2000) -> None:
        self.durations = SharedHistogramGroup({"duration": c.CACHE_DURATION}, max_series)
        self.caches: dict[str, CacheMetrics] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CacheMetrics:
        with self._lock:
            found = self.caches.get(name)
            if found is None:
                found = self.caches[name] = CacheMetrics(name, self.durations)
            return found

    def histogram_groups(self) -> tuple[SharedHistogramGroup, ...]:
        return (self.durations,)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {spec: (lambda _, field=field: self._observe(field)) for spec, field in COUNTERS.items()}

    def _observe(self, field: str) -> Iterator[Observation]:
        for cache in list(self.caches.values()):
            yield Observation(getattr(cache, field), cache.attributes)

    def reset(self) -> None:
        self._lock = threading.Lock()
        self.durations.reset()
        for cache in self.caches.values():
            cache.reset()
