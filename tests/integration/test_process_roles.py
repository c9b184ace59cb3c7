"""Processes that never serve HTTP (a batch job, a queue worker) export like any other, with this package installed.

A job adds 5 to a counter of its own and makes 5 LLM calls through httpx to a local provider (19 input and 7
output tokens each). Under ``opentelemetry-instrument``, with our configurator and with opentelemetry-distro's
chosen, a real OTLP receiver gets the job's counter and the calls' tokens exactly: during a long run on the
interval, and at the exit of a short one. With the Prometheus exporter, the endpoint answers from start-up.
Before process roles, such a process exported nothing at all (it waited to serve a request that never came).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests import local_http
from tests.integration.conftest import distro_env
from tests.integration.servers import BIN, ROOT, free_port, wait_for
from tests.integration.upstream import Upstream
from tests.otlp_receiver import Receiver, attributes_of

pytestmark = pytest.mark.integration
CALLS, INPUT, OUTPUT = 5, 19, 7  # tests/llm/transcripts/openai_chat.json, per call
JOB = textwrap.dedent("""
    import os, sys
    import httpx
    from opentelemetry import metrics

    if os.environ.get("JOB_SETUP"):
        import otel_llm_metrics
        otel_llm_metrics.setup()
    metrics.get_meter("batch.job").create_counter("job.items").add(5)
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            client.post(os.environ["JOB_UPSTREAM"] + "/v1/chat/completions",
                        json={"model": "openai_chat", "messages": []}).raise_for_status()
    print("calls made", flush=True)
    if os.environ.get("JOB_WAIT"):
        sys.stdin.readline()  # a long-running worker: it stays until told to stop
""")


@pytest.fixture(scope="module")
def upstream():
    provider = Upstream().start()
    yield provider
    provider.stop()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


def _job(tmp_path: Path, env: dict[str, str], *, zero_code: bool = True, wait: bool = False) -> subprocess.Popen:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    command = [sys.executable, str(script)]
    if zero_code:
        command = [str(BIN / "opentelemetry-instrument"), "python", str(script)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    python_path = os.pathsep.join(p for p in (env.pop("PYTHONPATH", ""), str(ROOT)) if p)
    full_env = {**base, "PYTHONPATH": python_path, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRIC_EXPORT_INTERVAL": "2000",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai", **({"JOB_WAIT": "1"} if wait else {}), **env}
    return subprocess.Popen(command, env=full_env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _otlp(receiver: Receiver, upstream: Upstream) -> dict[str, str]:
    return {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "JOB_UPSTREAM": upstream.url}


def _latest(receiver: Receiver) -> dict[str, list]:
    """Each metric's points in the last export that carried it (cumulative: the totals so far)."""
    latest: dict[str, list] = {}
    for request in receiver.metrics_requests():
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    latest[metric.name] = list(getattr(metric, kind).data_points)
    return latest


def _numbers(receiver: Receiver) -> tuple[int, dict[str, float]]:
    """The job's counter, and the calls' tokens by type, as exported last."""
    latest = _latest(receiver)
    items = sum(int(point.as_int) for point in latest.get("job.items", ()))
    tokens: dict[str, float] = {}
    for point in latest.get("gen_ai.client.token.usage", ()):
        kind = attributes_of(point.attributes)["gen_ai.token.type"]
        tokens[kind] = tokens.get(kind, 0) + point.sum
    return items, tokens


EXACT = (5, {"input": CALLS * INPUT, "output": CALLS * OUTPUT})


def _finish(job: subprocess.Popen, *, tell: bool = False) -> str:
    out, _ = job.communicate("stop\n" if tell else None, timeout=60)
    assert job.returncode == 0, out
    assert "Traceback" not in out, out
    return out


@pytest.mark.parametrize("configurator", ["ours", "opentelemetry-distro's"])
def test_a_batch_job_exports_its_own_counter_and_its_llm_calls_at_exit(tmp_path, receiver, upstream, configurator,
                                                                       request):
    env = _otlp(receiver, upstream)
    if configurator != "ours":
        env.update(distro_env(request.getfixturevalue("distro_path")))
    _finish(_job(tmp_path, env))
    assert _numbers(receiver) == EXACT


@pytest.mark.parametrize("configurator", ["ours", "opentelemetry-distro's"])
def test_a_long_running_worker_exports_on_the_interval_and_at_exit(tmp_path, receiver, upstream, configurator,
                                                                   request):
    env = _otlp(receiver, upstream)
    if configurator != "ours":
        env.update(distro_env(request.getfixturevalue("distro_path")))
    job = _job(tmp_path, env, wait=True)
    try:
        wait_for(lambda: _numbers(receiver) == EXACT, "the worker's numbers pushed on the interval, while it runs", 30)
        pushed_while_running = len(receiver.metrics_requests())
    finally:
        _finish(job, tell=True)
    assert _numbers(receiver) == EXACT
    assert len(receiver.metrics_requests()) > pushed_while_running, "and once more at exit"


@pytest.mark.parametrize("zero_code", [True, False], ids=["zero-code", "setup"])
def test_a_process_that_never_serves_opens_its_prometheus_endpoint_from_start_up(tmp_path, upstream, zero_code):
    port = free_port()
    env = {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
           "OTEL_LLM_METRICS_WORKERS_DIR": str(tmp_path / "workers"), "JOB_UPSTREAM": upstream.url,
           **({} if zero_code else {"JOB_SETUP": "1"})}
    job = _job(tmp_path, env, zero_code=zero_code, wait=True)

    def scraped() -> str:
        try:
            return local_http.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            assert job.poll() is None, job.stdout.read() if job.stdout else ""
            return ""

    def value(page: str, name: str, having: str = "") -> float | None:
        line = next((line for line in page.splitlines() if line.startswith(name) and having in line), None)
        return None if line is None else float(line.rsplit(" ", 1)[1])

    def complete() -> str:
        page = scraped()
        output = value(page, "gen_ai_client_token_usage_sum", 'gen_ai_token_type="output"')
        return page if output == CALLS * OUTPUT else ""

    try:
        page = wait_for(complete, "the job's endpoint with all its calls' tokens", 30)
    finally:
        _finish(job, tell=True)
    assert value(page, "job_items_total") == 5
    assert value(page, "gen_ai_client_token_usage_sum", 'gen_ai_token_type="input"') == CALLS * INPUT
