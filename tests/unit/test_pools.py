"""observe_pool on a real SQLAlchemy QueuePool over SQLite (no server needed), and what it refuses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.pool import QueuePool

from otel_llm_metrics import observe_pool

ROOT = Path(__file__).resolve().parents[2]


def _counts(view) -> dict[str, int]:
    return {p.attributes["db.client.connection.state"]: p.value for p in view.points("db.client.connection.count")}


def test_used_idle_pending_timeouts_and_times_from_a_real_pool(make_telemetry, tmp_path):
    telemetry = make_telemetry()
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", poolclass=QueuePool, pool_size=2,
                                      max_overflow=0, pool_timeout=0.2)
    observe_pool(engine, "sqlite", registry=telemetry.registry)
    held = [engine.connect() for _ in range(2)]
    timed_out = []

    def third() -> None:  # another thread, as a sync engine in a thread pool would
        try:
            engine.connect()
        except sqlalchemy.exc.TimeoutError:
            timed_out.append(True)

    thread = threading.Thread(target=third)
    thread.start()
    thread.join()
    view = telemetry.collect()
    assert _counts(view) == {"used": 2, "idle": 0}
    assert view.one("db.client.connection.max").value == 2
    assert view.one("db.client.connection.timeouts").value == 1 and timed_out == [True]
    assert view.one("db.client.connection.pending_requests").value == 0
    for connection in held:
        connection.close()
    view = telemetry.collect()
    assert _counts(view) == {"used": 0, "idle": 2}
    assert view.one("db.client.connection.wait_time").count == 3, "two checkouts and the timed-out one"
    assert view.one("db.client.connection.use_time").count == 2


def test_a_disposed_engine_keeps_reporting_its_new_pool_and_a_dropped_one_stops(make_telemetry, tmp_path):
    telemetry = make_telemetry()
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", poolclass=QueuePool, pool_size=3)
    observe_pool(engine, "sqlite", registry=telemetry.registry)
    engine.dispose()
    with engine.connect():
        assert _counts(telemetry.collect()) == {"used": 1, "idle": 0}
    del engine
    import gc

    gc.collect()
    assert not telemetry.collect().points("db.client.connection.count"), "a collected engine stops reporting"


def test_an_unsupported_pool_is_refused_with_what_is_supported():
    with pytest.raises(TypeError, match="SQLAlchemy engine, an asyncpg pool"):
        observe_pool(object(), "x")


DISCOVERY = """
import sys
from otel_llm_metrics.registry import DEFAULT_REGISTRY
from otel_llm_metrics.resources.pools import discover_sqlalchemy_engines_once_imported

assert discover_sqlalchemy_engines_once_imported()
print("imported before the app:", "sqlalchemy" in sys.modules)
import sqlalchemy

engine = sqlalchemy.create_engine("sqlite:///" + sys.argv[1])
with engine.connect():
    pass
print("pools:", [pool.name for pool in DEFAULT_REGISTRY.pools.pools])
"""


def test_zero_code_discovery_waits_for_the_app_to_import_sqlalchemy(tmp_path):
    # A fresh interpreter: this one has imported SQLAlchemy already.
    script = tmp_path / "app.py"
    script.write_text(DISCOVERY)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "app.sqlite")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["imported before the app: False", "pools: ['sqlite/app.sqlite']"], done.stdout
