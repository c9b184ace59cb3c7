"""Cache metrics: hits, misses, sets, deletes, errors and operation latency, per cache name.

No semantic convention exists for caches, so the names are ours (``cache.*``); hit ratio is
PromQL: ``sum(rate(cache_hits_total[5m])) / (sum(rate(cache_hits_total[5m])) + sum(rate(cache_misses_total[5m])))``.

Three ways in:
- ``cache_metrics("name")``: the explicit API (``.hit()``, ``.miss()``, ``.set()``, ``.delete()``,
  ``.error()``, ``with .timed("get"):``) for anything else;
- ``@cached("name", maxsize=..., ttl=...)``: memoise a sync or async function and count it;
- ``instrument_redis(client, "name")``: a redis-py client (sync or asyncio) whose get/mget/set/
  delete outcomes are counted.

Counters are plain integers read at collection; the latency histogram is a plain-Python one.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import HistogramGroup


class CacheMetrics:
    """The counters of one named cache."""

    def __init__(self, name: str, durations: HistogramGroup) -> None:
        self.name = name
        self.attributes = {c.CACHE_NAME: name}
        self.hits = self.misses = self.sets = self.deletes = self.errors = 0
        self._durations = durations

    def hit(self, count: int = 1) -> None:
        self.hits += count

    def miss(self, count: int = 1) -> None:
        self.misses += count

    def set(self, count: int = 1) -> None:
        self.sets += count

    def delete(self, count: int = 1) -> None:
        self.deletes += count

    def error(self, count: int = 1) -> None:
        self.errors += count

    def record_duration(self, operation: str, seconds: float) -> None:
        self._durations.get((self.name, operation))[0].record(seconds)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Time an operation; an exception counts as an error and propagates."""
        started = perf_counter()
        try:
            yield
        except Exception:
            self.errors += 1
            raise
        finally:
            self.record_duration(operation, perf_counter() - started)


class CacheStats:
    def __init__(self, max_series: int = 2000) -> None:
        self.durations = HistogramGroup((c.CACHE_DURATION,), max_series)
        self.caches: dict[str, CacheMetrics] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CacheMetrics:
        with self._lock:
            found = self.caches.get(name)
            if found is None:
                found = self.caches[name] = CacheMetrics(name, self.durations)
            return found

    def _observe(self, field: str) -> Iterator[Observation]:
        for cache in list(self.caches.values()):
            yield Observation(getattr(cache, field), cache.attributes)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {c.CACHE_HITS: lambda _: self._observe("hits"), c.CACHE_MISSES: lambda _: self._observe("misses"),
                c.CACHE_SETS: lambda _: self._observe("sets"), c.CACHE_DELETES: lambda _: self._observe("deletes"),
                c.CACHE_ERRORS: lambda _: self._observe("errors")}

    def reset(self) -> None:
        self.durations.reset()
        for cache in self.caches.values():
            cache.hits = cache.misses = cache.sets = cache.deletes = cache.errors = 0


def cache_metrics(name: str, *, registry: Any = None) -> CacheMetrics:
    """The metrics of the cache called ``name`` (created on first use)."""
    from ..registry import DEFAULT_REGISTRY

    return (registry or DEFAULT_REGISTRY).caches.get(name)


_MISSING = object()


def cached(name: str, *, maxsize: int = 1024, ttl: float | None = None, registry: Any = None) -> Callable:
    """Memoise a sync or async function (LRU, optional TTL in seconds) and count hits and misses."""
    if maxsize < 1:
        raise ValueError(f"cached(maxsize={maxsize!r}): expected a whole number >= 1")

    def decorate(function: Callable) -> Callable:
        metrics = cache_metrics(name, registry=registry)
        store: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        lock = threading.Lock()

        def lookup(key: Any) -> Any:
            started = perf_counter()
            with lock:
                entry = store.get(key, _MISSING)
                if entry is not _MISSING and (ttl is None or time.monotonic() - entry[0] < ttl):
                    store.move_to_end(key)
                    value = entry[1]
                else:
                    value = _MISSING
            metrics.record_duration("get", perf_counter() - started)
            if value is _MISSING:
                metrics.misses += 1
            else:
                metrics.hits += 1
            return value

        def keep(key: Any, value: Any) -> None:
            with lock:
                store[key] = (time.monotonic(), value)
                store.move_to_end(key)
                while len(store) > maxsize:
                    store.popitem(last=False)
            metrics.sets += 1

        def key_of(args: tuple, kwargs: dict) -> Any:
            return (args, tuple(sorted(kwargs.items()))) if kwargs else args

        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                value = lookup(key)
                if value is _MISSING:
                    value = await function(*args, **kwargs)
                    keep(key, value)
                return value
            wrapper: Any = async_wrapper
        else:
            @functools.wraps(function)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                value = lookup(key)
                if value is _MISSING:
                    value = function(*args, **kwargs)
                    keep(key, value)
                return value
            wrapper = sync_wrapper

        def cache_clear() -> None:
            with lock:
                count = len(store)
                store.clear()
            metrics.deletes += count

        wrapper.cache_clear = cache_clear
        wrapper.cache_metrics = metrics
        return wrapper

    return decorate


class _RedisCounting:
    """Delegates to a redis-py client; get/mget/set/delete outcomes are counted and timed."""

    def __init__(self, client: Any, metrics: CacheMetrics) -> None:
        self._client = client
        self._metrics = metrics

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._client, attribute)

    def _count(self, operation: str, result: Any) -> None:
        metrics = self._metrics
        if operation == "get":
            if result is None:
                metrics.misses += 1
            else:
                metrics.hits += 1
        elif operation == "mget":
            found = sum(1 for value in result if value is not None)
            metrics.hits += found
            metrics.misses += len(result) - found
        elif operation == "set":
            metrics.sets += 1
        elif operation == "delete":
            metrics.deletes += int(result or 0)

    def _call(self, operation: str, method: str, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            result = getattr(self._client, method)(*args, **kwargs)
        except Exception:
            self._metrics.errors += 1
            self._metrics.record_duration(operation, perf_counter() - started)
            raise
        if inspect.isawaitable(result):  # redis.asyncio: plain methods that return coroutines
            return self._finish(operation, result, started)
        self._metrics.record_duration(operation, perf_counter() - started)
        self._count(operation, result)
        return result

    async def _finish(self, operation: str, pending: Any, started: float) -> Any:
        try:
            result = await pending
        except Exception:
            self._metrics.errors += 1
            raise
        finally:
            self._metrics.record_duration(operation, perf_counter() - started)
        self._count(operation, result)
        return result

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get", "get", *args, **kwargs)

    def mget(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("mget", "mget", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set", "set", *args, **kwargs)

    def setex(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set", "setex", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete", "delete", *args, **kwargs)


def instrument_redis(client: Any, name: str = "redis", *, registry: Any = None) -> Any:
    """A counting view of a redis-py client (sync or asyncio); other methods pass straight through."""
    return _RedisCounting(client, cache_metrics(name, registry=registry))
