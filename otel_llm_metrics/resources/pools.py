"""Database and Redis connection pools as ``db.client.connection.*`` instruments.

``observe_pool(pool_or_engine, name=...)`` takes a SQLAlchemy engine (sync or async), an asyncpg
pool, a psycopg_pool pool (sync or async) or a redis-py pool or client (sync or async). Each
driver reports what it really exposes; an instrument a driver cannot fill is left out for that
pool, never guessed:

| driver | count (idle/used) | max | idle.max | idle.min | pending_requests | timeouts | wait_time | use_time |
|---|---|---|---|---|---|---|---|---|
| SQLAlchemy QueuePool / AsyncAdaptedQueuePool | yes | size + max_overflow | size | - | yes | yes | yes | yes |
| asyncpg | yes | max_size | - | min_size | - | - | - | - |
| psycopg_pool | yes | max_size | - | min_size | yes | yes (errors: timeouts, too many waiting) | - | - |
| redis-py ConnectionPool / BlockingConnectionPool | yes | max_connections | - | - | - | - | - | - |

Pools are held weakly (asyncpg's strongly, until it closes): a pool that is closed or garbage
collected stops reporting, and one whose
reading fails is skipped for that collection while the others still report.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ..registry import DEFAULT_REGISTRY, Registry
from .pool_stats import ObservedPool, PoolReading, PoolStats, pool_key

logger = logging.getLogger(__name__)


# -- drivers ------------------------------------------------------------------------------------
def _sqlalchemy(engine: Any, observed: ObservedPool, stats: PoolStats) -> Callable[[Any], PoolReading]:
    """QueuePool numbers, plus wait/pending/timeouts timed around the pool's own acquire."""
    from sqlalchemy import event
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    key = pool_key(observed.name)
    hooked: weakref.WeakSet = weakref.WeakSet()

    def hook(pool: Any) -> None:
        if pool in hooked or not hasattr(pool, "_do_get"):
            return
        hooked.add(pool)
        acquire = pool._do_get

        def timed_acquire() -> Any:  # runs in whatever thread checks a connection out
            observed.add_pending(1)
            started = perf_counter()
            try:
                return acquire()
            except PoolTimeoutError:
                observed.add_timeout()
                raise
            finally:
                observed.add_pending(-1)
                stats.wait.record(key, "wait", perf_counter() - started)

        pool._do_get = timed_acquire
        event.listen(pool, "checkout", lambda _conn, record, _proxy: record.info.__setitem__(
            "otel_llm_metrics.checkout", perf_counter()))
        event.listen(pool, "checkin", lambda _conn, record: _record_use(record, stats, key))

    def read(target: Any) -> PoolReading:
        pool = target.pool  # dispose() swaps in a new pool: hook whichever is current
        hook(pool)
        if not hasattr(pool, "checkedout"):
            return PoolReading()
        size = pool.size()
        overflow = getattr(pool, "_max_overflow", None)
        return PoolReading(used=pool.checkedout(), idle=pool.checkedin(),
                           max=size + overflow if isinstance(overflow, int) and overflow >= 0 else None,
                           idle_max=size, pending=observed.pending, timeouts=observed.timeouts)

    read(engine)
    return read


def _record_use(record: Any, stats: PoolStats, key: tuple) -> None:
    started = record.info.pop("otel_llm_metrics.checkout", None)
    if started is not None:
        stats.use.record(key, "use", perf_counter() - started)


def _asyncpg(pool: Any) -> PoolReading | None:
    if pool.is_closing():
        return None  # closed: stop reporting it
    size, idle = pool.get_size(), pool.get_idle_size()
    return PoolReading(used=size - idle, idle=idle, max=pool.get_max_size(), idle_min=pool.get_min_size())


def _psycopg(pool: Any) -> PoolReading:
    if getattr(pool, "closed", False):
        return PoolReading()
    stats = pool.get_stats()
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    return PoolReading(used=size - available, idle=available, max=stats.get("pool_max"),
                       idle_min=stats.get("pool_min"), pending=stats.get("requests_waiting", 0),
                       timeouts=stats.get("requests_errors", 0))


def _redis(pool: Any) -> PoolReading:
    if hasattr(pool, "_connections") and hasattr(pool, "pool"):  # BlockingConnectionPool
        idle = sum(1 for conn in list(pool.pool.queue) if conn is not None)
        return PoolReading(used=len(pool._connections) - idle, idle=idle, max=pool.max_connections)
    return PoolReading(used=len(pool._in_use_connections), idle=len(pool._available_connections),
                       max=pool.max_connections)


def discover_sqlalchemy_engines(registry: Registry | None = None) -> bool:
    """Zero code: observe every SQLAlchemy engine when it first connects (class-level event API).

    The pool is named ``driver/database`` (never the credentials), made unique with ``#2``...;
    returns False when SQLAlchemy is not installed.
    """
    import importlib.util

    if importlib.util.find_spec("sqlalchemy") is None:
        return False
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen: weakref.WeakSet = weakref.WeakSet()
    names: set[str] = set()
    lock = threading.Lock()

    def first_connect(connection: Any) -> None:
        engine = connection.engine
        if engine in seen:
            return
        with lock:
            if engine in seen:
                return
            seen.add(engine)
            database = (engine.url.database or "").rstrip("/").rsplit("/", 1)[-1]  # a file: its name only
            base = f"{engine.url.drivername}/{database}"
            name, n = base, 1
            while name in names:
                n += 1
                name = f"{base}#{n}"
            names.add(name)
        try:
            observe_pool(engine, name, registry=registry)
        except Exception:
            logger.debug("otel_llm_metrics: could not observe engine %s", name, exc_info=True)

    event.listen(Engine, "engine_connect", first_connect)
    return True


def discover_sqlalchemy_engines_once_imported() -> bool:
    """Zero code: ``discover_sqlalchemy_engines`` when the app imports SQLAlchemy (at once if it has), never
    importing it for an app that does not use it (0.2 s of start-up, measured here); False if not installed."""
    import importlib.util

    if importlib.util.find_spec("sqlalchemy") is None:
        return False
    import wrapt

    def imported(_module: Any) -> None:
        try:
            discover_sqlalchemy_engines()
        except Exception:  # discovery is a convenience; the app's import must succeed regardless
            logger.debug("otel_llm_metrics: SQLAlchemy engine discovery is off", exc_info=True)

    wrapt.register_post_import_hook(imported, "sqlalchemy")
    return True


def observe_pool(pool_or_engine: Any, name: str, *, registry: Registry | None = None) -> None:
    """Report a connection pool's numbers under ``db.client.connection.pool.name`` = ``name``."""
    stats: PoolStats = (registry or DEFAULT_REGISTRY).pools
    target = getattr(pool_or_engine, "sync_engine", pool_or_engine)  # AsyncEngine -> its Engine
    module = type(target).__module__
    if hasattr(target, "connection_pool") and module.startswith("redis"):  # a redis client
        target = target.connection_pool
        module = type(target).__module__
    if module.startswith("sqlalchemy") and hasattr(target, "pool"):
        observed = ObservedPool(name, target, lambda _: PoolReading())
        observed._read = _sqlalchemy(target, observed, stats)
    elif module.startswith("asyncpg"):
        observed = ObservedPool(name, target, _asyncpg)
    elif module.startswith("psycopg_pool"):
        observed = ObservedPool(name, target, _psycopg)
    elif module.startswith("redis"):
        observed = ObservedPool(name, target, _redis)
    else:
        raise TypeError(f"observe_pool: {type(pool_or_engine).__qualname__} is not a supported pool. Expected a "
                        "SQLAlchemy engine, an asyncpg pool, a psycopg_pool pool, or a redis-py pool or client.")
    stats.add(observed)
