"""The default service name: the served app's module, in every process of the server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from otel_llm_metrics.providers import default_service_name
from tests.otlp_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]


def test_named_after_the_app_spec_or_the_script():
    assert default_service_name(["/venv/bin/uvicorn", "main:app", "--workers", "4"]) == "main"
    assert default_service_name(["/srv/api/__main__.py"]) == "api"
    assert default_service_name(["-c"]) is None


MASTER = """
import multiprocessing
from otel_llm_metrics.providers import default_service_name

def name_at_spawn_start(queue):
    # what a spawned worker's sys.argv is when zero code starts, before multiprocessing restores it
    queue.put(default_service_name(["-c", "--multiprocessing-fork", "tracker_fd=5", "pipe_handle=7"]))

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=name_at_spawn_start, args=(queue,))
    child.start()
    print(queue.get(timeout=30), default_service_name())
    child.join(30)
"""


def test_a_spawned_worker_takes_its_masters_name(tmp_path):
    # The master is a script of its own: under pytest-xdist this process's command line is `python -c ...`.
    (tmp_path / "serve.py").write_text(MASTER)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["serve", "serve"], done.stdout


def test_a_signals_own_endpoint_and_protocol_take_precedence_over_the_general_ones(monkeypatch):
    from otel_llm_metrics import Registry, Telemetry, load_settings

    general, traces = Receiver(), Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", general.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # the general protocol...
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")  # ...each signal its own
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.url + "/custom/traces")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    telemetry = Telemetry(load_settings(), Registry())
    try:
        telemetry.tracer_provider.get_tracer("test").start_span("one").end()
        assert telemetry.tracer_provider.force_flush(10_000)
        telemetry.meter_provider.force_flush(10_000)
    finally:
        telemetry.shutdown()
        general.stop()
        traces.stop()
    assert traces.paths() and set(traces.paths()) == {"/custom/traces"}, "the traces endpoint, used as given"
    assert general.paths() and set(general.paths()) == {"/v1/metrics"}, "metrics at the general endpoint, no spans"
