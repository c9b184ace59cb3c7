"""The default service name: the served app's module, in every process of the server."""

from __future__ import annotations

import multiprocessing
import sys

from otel_llm_metrics.providers import default_service_name


def test_named_after_the_app_spec_or_the_script():
    assert default_service_name(["/venv/bin/uvicorn", "main:app", "--workers", "4"]) == "main"
    assert default_service_name(["/srv/api/__main__.py"]) == "api"
    assert default_service_name(["-c"]) is None


def _name_at_spawn_start(queue) -> None:
    # What a spawned worker's sys.argv is when zero code starts, before multiprocessing restores it.
    queue.put(default_service_name(["-c", "--multiprocessing-fork", "tracker_fd=5", "pipe_handle=7"]))


def test_a_spawned_worker_takes_its_masters_name():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_name_at_spawn_start, args=(queue,))
    child.start()
    name = queue.get(timeout=30)
    child.join(30)
    assert name is not None and name == default_service_name(sys.argv)
