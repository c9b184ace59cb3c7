"""Connection pools and caches against real PostgreSQL and Redis, started by the test suite."""

from __future__ import annotations

import asyncio
import threading

import asyncpg
import psycopg_pool
import pytest
import redis
import sqlalchemy
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_llm_metrics import Registry, Telemetry, catalogue, instrument_redis, load_settings, observe_pool
from tests import local_http
from tests.conftest import MetricsView
from tests.integration.servers import Postgres, Redis, free_port, wait_for

pytestmark = pytest.mark.integration
COUNT = "db.client.connection.count"


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_server():
    server = Redis()
    yield server
    server.stop()


@pytest.fixture
def telemetry():
    """Our own registry, read by an in-memory reader and served on a Prometheus port."""
    reader = InMemoryMetricReader()
    settings = load_settings(environ={}, prometheus_port=free_port(), resources=("none",))
    made = Telemetry(settings, Registry(), [reader])
    made.collect = lambda: MetricsView(reader)
    yield made
    made.shutdown()


def _used_idle(view: MetricsView, pool: str) -> dict[str, int]:
    return {p.attributes["db.client.connection.state"]: p.value for p in view.points(COUNT)
            if p.attributes["db.client.connection.pool.name"] == pool}


def test_sqlalchemy_used_idle_in_prometheus_pending_timeouts_and_times(postgres, telemetry, prometheus):
    engine = sqlalchemy.create_engine(postgres.dsn.replace("postgresql://", "postgresql+psycopg://"),
                                      pool_size=3, max_overflow=0, pool_timeout=0.3)
    observe_pool(engine, "orders-db", registry=telemetry.registry)
    telemetry.ensure_serving()
    prometheus.add_target(f"127.0.0.1:{telemetry.prometheus_port}")
    held = [engine.connect() for _ in range(2)]
    used = 'db_client_connection_count{db_client_connection_pool_name="orders-db",db_client_connection_state="used"}'
    prometheus.wait_value(f"sum({used})", 2, deadline_s=45)
    view = telemetry.collect()
    assert _used_idle(view, "orders-db") == {"used": 2, "idle": 0}
    assert view.one("db.client.connection.max").value == 3
    assert view.one("db.client.connection.idle.max").value == 3

    for connection in held:
        connection.close()
    prometheus.wait_value(f"sum({used})", 0)
    assert _used_idle(telemetry.collect(), "orders-db") == {"used": 0, "idle": 2}

    # Exhaust the pool: a fourth caller waits (pending), then times out.
    held = [engine.connect() for _ in range(3)]
    failure: list[BaseException] = []

    def fourth() -> None:
        try:
            engine.connect()
        except sqlalchemy.exc.TimeoutError as exc:
            failure.append(exc)

    waiter = threading.Thread(target=fourth)
    waiter.start()
    wait_for(lambda: telemetry.collect().one("db.client.connection.pending_requests").value == 1,
             "the fourth caller counted as pending")
    waiter.join(5)
    assert failure, "the pool timed out the fourth caller"
    view = telemetry.collect()
    assert view.one("db.client.connection.timeouts").value == 1
    assert view.one("db.client.connection.pending_requests").value == 0
    assert view.one("db.client.connection.wait_time").max >= 0.3
    for connection in held:
        connection.close()
    use = telemetry.collect().one("db.client.connection.use_time")
    assert use.count == 5

    text = local_http.get(f"http://127.0.0.1:{telemetry.prometheus_port}/metrics").text
    names = {spec.prometheus_name for spec in catalogue.POOL_SPECS if spec is not catalogue.POOL_IDLE_MIN}
    assert {n for n in names if f"\n{n}" not in text} == set(), "SQLAlchemy fills all but idle.min"

    engine.dispose()  # a disposed engine keeps reporting its (new, empty) pool; nothing raises
    assert _used_idle(telemetry.collect(), "orders-db") == {"used": 0, "idle": 0}


def test_asyncpg_pool(postgres, telemetry):
    async def scenario() -> tuple[dict, dict, int]:
        pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=4)
        observe_pool(pool, "asyncpg", registry=telemetry.registry)
        held = [await pool.acquire() for _ in range(3)]
        during = _used_idle(telemetry.collect(), "asyncpg")
        maximum = telemetry.collect().one("db.client.connection.max").value
        for connection in held:
            await pool.release(connection)
        after = _used_idle(telemetry.collect(), "asyncpg")
        await pool.close()
        return during, after, maximum

    during, after, maximum = asyncio.run(scenario())
    assert during == {"used": 3, "idle": 0} and maximum == 4
    assert after == {"used": 0, "idle": 3}
    telemetry.collect()  # a closed pool: the collection still works


def test_psycopg_pool_pending_and_timeouts(postgres, telemetry):
    pool = psycopg_pool.ConnectionPool(postgres.dsn, min_size=1, max_size=2, timeout=0.3, open=True)
    observe_pool(pool, "psycopg", registry=telemetry.registry)
    held = [pool.getconn() for _ in range(2)]
    assert _used_idle(telemetry.collect(), "psycopg") == {"used": 2, "idle": 0}
    errors: list[BaseException] = []
    waiter = threading.Thread(target=lambda: _expect_timeout(pool, errors))
    waiter.start()
    wait_for(lambda: telemetry.collect().one("db.client.connection.pending_requests").value == 1, "a waiter")
    waiter.join(5)
    assert errors and telemetry.collect().one("db.client.connection.timeouts").value == 1
    for connection in held:
        pool.putconn(connection)
    assert _used_idle(telemetry.collect(), "psycopg") == {"used": 0, "idle": 2}
    pool.close()
    telemetry.collect()


def _expect_timeout(pool, errors: list) -> None:
    try:
        pool.getconn()
    except psycopg_pool.PoolTimeout as exc:
        errors.append(exc)


def test_redis_pool_and_exact_cache_counters(redis_server, telemetry):
    telemetry.ensure_serving()
    pool = redis.ConnectionPool.from_url(redis_server.url, max_connections=5)
    client = redis.Redis(connection_pool=pool)
    observe_pool(client, "redis", registry=telemetry.registry)
    held = [pool.get_connection() for _ in range(2)]
    assert _used_idle(telemetry.collect(), "redis") == {"used": 2, "idle": 0}
    for connection in held:
        pool.release(connection)

    cache = instrument_redis(client, "sessions", registry=telemetry.registry)
    cache.set("a", "1")
    cache.set("b", "2")
    assert cache.get("a") == b"1"
    assert cache.get("c") is None
    assert cache.mget(["a", "b", "c"]) == [b"1", b"2", None]
    assert cache.delete("a", "b") == 2
    assert cache.ping()  # everything else passes straight through
    view = telemetry.collect()
    counts = {name: view.one(f"cache.{name}", cache__name="sessions").value
              for name in ("hits", "misses", "sets", "deletes")}
    assert counts == {"hits": 3, "misses": 2, "sets": 2, "deletes": 2}
    durations = {p.attributes["cache.operation"]: p.count for p in view.points("cache.operation.duration")}
    assert durations == {"set": 2, "get": 2, "mget": 1, "delete": 1}
    text = local_http.get(f"http://127.0.0.1:{telemetry.prometheus_port}/metrics").text
    assert all(f"\n{spec.prometheus_name}" in text for spec in catalogue.CACHE_SPECS)


def test_async_redis_and_a_redis_that_went_away(telemetry):
    server = Redis()
    client = redis.asyncio.Redis.from_url(server.url)
    cache = instrument_redis(client, "async-sessions", registry=telemetry.registry)
    observe_pool(client, "async-redis", registry=telemetry.registry)

    async def scenario() -> None:
        await cache.set("k", "v")
        assert await cache.get("k") == b"v"
        server.stop()  # Redis goes away
        with pytest.raises(redis.exceptions.ConnectionError):
            await cache.get("k")
        await client.aclose()

    asyncio.run(scenario())
    view = telemetry.collect()
    assert view.one("cache.errors", cache__name="async-sessions").value == 1
    assert view.one("cache.hits", cache__name="async-sessions").value == 1
    assert view.points(COUNT), "the pool of a dead server still reports its (local) numbers"


def test_async_engine_and_automatic_discovery(postgres, telemetry):
    """AsyncEngine pools report like sync ones; discovery observes engines with no code."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from otel_llm_metrics.resources.pools import discover_sqlalchemy_engines

    assert discover_sqlalchemy_engines(registry=telemetry.registry)

    async def scenario() -> dict:
        engine = create_async_engine(postgres.dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=4)
        held = [await engine.connect() for _ in range(2)]
        for connection in held:
            await connection.exec_driver_sql("select 1")
        counts = _used_idle(telemetry.collect(), "postgresql+asyncpg/postgres")
        for connection in held:
            await connection.close()
        await engine.dispose()
        return counts

    assert asyncio.run(scenario()) == {"used": 2, "idle": 0}
