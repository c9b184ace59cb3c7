"""Cache metrics: hits, misses, sets, deletes, errors and operation latency, per cache name.

No semantic convention exists for caches, so the names are ours (``cache.*``); hit ratio is
PromQL: ``sum(rate(cache_hits_total[5m])) / (sum(rate(cache_hits_total[5m])) + sum(rate(cache_misses_total[5m])))``.

Three ways in:
- ``cache_metrics("name")``: the explicit API (``.hit()``, ``.miss()``, ``.set()``, ``.delete()``,
  ``.error()``, ``with .timed("get"):``) for anything else;
- ``@cached("name", maxsize=..., ttl=...)``: memoise a sync or async function and count it;
- ``instrument_redis(client, "name")``: a redis-py client (sync or asyncio) whose get/mget/set/
  delete outcomes are counted.

Counters are plain integers read at collection, the latency histogram a plain-Python one; both
live in ``cache_stats.py`` and are safe to update from any thread.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ..registry import DEFAULT_REGISTRY, Registry
from .cache_stats import CacheMetrics


def cache_metrics(name: str, *, registry: Registry | None = None) -> CacheMetrics:
    """The metrics of the cache called ``name`` (created on first use)."""
    return (registry or DEFAULT_REGISTRY).caches.get(name)


_MISSING = object()


def cached(name: str, *, maxsize: int = 1024, ttl: float | None = None, registry: Registry | None = None) -> Callable:
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
                metrics.miss()
            else:
                metrics.hit()
            return value

        def keep(key: Any, value: Any) -> None:
            with lock:
                store[key] = (time.monotonic(), value)
                store.move_to_end(key)
                while len(store) > maxsize:
                    store.popitem(last=False)
            metrics.set()

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
            metrics.delete(count)

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
                metrics.miss()
            else:
                metrics.hit()
        elif operation == "mget":
            found = sum(1 for value in result if value is not None)
            metrics.hit(found)
            metrics.miss(len(result) - found)
        elif operation == "set":
            metrics.set()
        elif operation == "delete":
            metrics.delete(int(result or 0))

    def _call(self, operation: str, method: str, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            result = getattr(self._client, method)(*args, **kwargs)
        except Exception:
            self._metrics.error()
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
            self._metrics.error()
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


def instrument_redis(client: Any, name: str = "redis", *, registry: Registry | None = None) -> Any:
    """A counting view of a redis-py client (sync or asyncio); other methods pass straight through."""
    return _RedisCounting(client, cache_metrics(name, registry=registry))
