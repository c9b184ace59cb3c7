"""The process role: decided from the command line, moved on by the servers' hooks; a master never collects."""

from __future__ import annotations

import os
import threading

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_llm_metrics.process_role import ProcessRole, Role, gate, role_of_command


@pytest.mark.parametrize(("argv", "orig_argv", "role"), [
    (["/venv/bin/uvicorn", "app:app"], None, Role.STARTING),
    (["/venv/bin/gunicorn", "-w", "4", "app:app"], None, Role.STARTING),
    (["/venv/bin/hypercorn", "app:app"], None, Role.STARTING),
    (["/venv/bin/granian", "--interface", "asgi", "app:app"], None, Role.STARTING),
    (["/venv/bin/fastapi", "run"], None, Role.STARTING),
    (["-m"], ["python", "-m", "uvicorn", "app:app"], Role.STARTING),  # python -m, while the start-up runs
    (["/venv/lib/python3.11/site-packages/uvicorn/__main__.py", "app:app"], None, Role.STARTING),
    (["job.py"], None, Role.PLAIN),
    (["/venv/bin/celery", "-A", "proj", "worker"], None, Role.PLAIN),
    (["-m"], ["python", "-m", "rq.cli", "worker"], Role.PLAIN),
    (["-c"], ["python", "-c", "print(1)"], Role.PLAIN),
    ([""], None, Role.PLAIN),
    (["-c"], ["python", "-c", "from multiprocessing.resource_tracker import main;main(5)"], Role.HELPER),
    (["-c"], ["python", "-c", "from multiprocessing.forkserver import main; main(5, 6)"], Role.HELPER),
])
def test_the_role_a_command_starts_with(argv, orig_argv, role):
    assert role_of_command(argv, orig_argv) is role


def test_only_plain_and_serving_processes_export():
    exporting = {role: ProcessRole(role).exporting() for role in Role}
    assert exporting == {Role.PLAIN: True, Role.SERVING: True, Role.STARTING: False, Role.MASTER: False,
                         Role.HELPER: False}


def test_a_starting_server_exports_once_it_serves_and_a_master_never_does():
    role = ProcessRole(Role.STARTING)
    role.now_serving()
    assert role.role is Role.SERVING and role.exporting()
    master = ProcessRole(Role.PLAIN)
    master.become_master()
    master.now_serving()
    assert master.role is Role.MASTER and not master.exporting()


def test_a_spawned_child_waits_to_serve_its_endpoint():
    assert ProcessRole(Role.PLAIN).serves_endpoint_from_start()
    assert not ProcessRole(Role.PLAIN, spawned=True).serves_endpoint_from_start()
    assert not ProcessRole(Role.STARTING).serves_endpoint_from_start()


def test_a_gated_reader_collects_nothing_in_a_master_not_even_the_sdks_part():
    role = ProcessRole(Role.PLAIN)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_counter("c").add(1)
    calls = []
    original = reader._collect

    def counting(reader_, timeout_millis=10_000):
        calls.append(1)
        return original(reader_, timeout_millis=timeout_millis)

    reader._collect = gate(counting, role)
    assert reader.get_metrics_data() is not None and len(calls) == 1
    role.become_master()
    assert reader.get_metrics_data() is None
    assert len(calls) == 1, "the SDK's collection (and its locks) never ran in the master"
    provider.shutdown()


def test_becoming_a_master_waits_for_a_collection_in_progress_then_calls_back():
    role = ProcessRole(Role.PLAIN)
    inside, release = threading.Event(), threading.Event()
    handed_over = []

    def slow_collect(reader, timeout_millis=10_000):
        inside.set()
        release.wait(10)
        return "data"

    collected = []
    collector = threading.Thread(target=lambda: collected.append(gate(slow_collect, role)(None)))
    collector.start()
    assert inside.wait(10)
    role.when_master(lambda: handed_over.append(role.role))
    becoming = threading.Thread(target=role.become_master)
    becoming.start()
    becoming.join(0.2)
    assert becoming.is_alive(), "no fork may happen while a collection holds the SDK's locks"
    assert not handed_over
    release.set()
    becoming.join(10)
    collector.join(10)
    assert collected == ["data"] and handed_over == [Role.MASTER]
    assert gate(slow_collect, role)(None) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_masters_forked_child_serves_and_exports():
    role = ProcessRole(Role.PLAIN)
    role.become_master()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            role.after_fork_in_child()
            os.write(write, f"{role.role.value} {role.exporting()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == "serving True"
    assert role.role is Role.MASTER, "the parent stays the master"


def test_a_master_tells_its_workers_how_many_it_starts(monkeypatch):
    from otel_llm_metrics import process_role

    monkeypatch.setenv(process_role.WORKERS_VARIABLE, "")  # undone after the test, whatever sets it meanwhile
    assert process_role.server_workers() is None
    role = ProcessRole(Role.STARTING)
    role.become_master(4)
    assert process_role.server_workers() == 4, "in the environment its workers inherit"
