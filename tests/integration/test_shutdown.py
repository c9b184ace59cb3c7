"""Stopped the way production stops it (SIGTERM to the main process), every request reaches a real
OTLP receiver, and processes that serve nothing (a pre-fork master, multiprocessing's resource
tracker) push nothing."""

from __future__ import annotations

import re
import signal

import httpx
import pytest

from tests import local_http
from tests.integration.servers import BIN, ROOT, Process, Rotel, free_port, wait_for

pytestmark = pytest.mark.integration
REQUESTS = 40


def _resource_blocks(log: str) -> list[str]:
    return re.split(r"\n(?=ResourceMetrics #)", log)[1:]


def _resource_of(block: str) -> str:
    """The resource's attributes (a point's process.pid, as on a merged server's process.* metrics, is not)."""
    return block.split("ScopeMetrics #", 1)[0]


def _final_counts(log: str) -> dict[str, int]:
    """Requests each stream reported last (cumulative), by service.instance.id: one per worker, or one per server
    where the workers' numbers are pushed merged (workers/otlp_push.py)."""
    counts: dict[str, int] = {}
    for block in _resource_blocks(log):
        instance = re.search(r"service\.instance\.id: Str\(([^)]*)\)", _resource_of(block))
        metric = [m for m in re.split(r"\n(?=Metric #)", block) if "-> Name: http.server.request.duration\n" in m]
        if instance and metric:
            total = sum(int(n) for n in re.findall(r"\nCount: (\d+)", metric[0]))
            counts[instance.group(1)] = max(counts.get(instance.group(1), 0), total)
    return counts


def _reporting_pids(log: str) -> set[int]:
    return {int(pid) for block in _resource_blocks(log)
            for pid in re.findall(r"process\.pid: Int\((\d+)\)", _resource_of(block))}


@pytest.fixture
def rotel():
    server = Rotel()
    yield server
    server.stop()


SERVERS = {
    "uvicorn": lambda app, port, workers: [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port),
                                           "--no-access-log", "--workers", str(workers),
                                           "--timeout-worker-healthcheck", "60"],  # see test_workers.py
    "gunicorn": lambda app, port, workers: [str(BIN / "gunicorn"), app, "-b", f"127.0.0.1:{port}", "-w", str(workers),
                                            "-k", "uvicorn.workers.UvicornWorker", "--graceful-timeout", "20"],
}
WORKER_PIDS = {"uvicorn": r"Started server process \[(\d+)\]", "gunicorn": r"Booting worker with pid: (\d+)"}


@pytest.mark.parametrize(("server", "app", "workers"), [
    ("uvicorn", "tests.integration.plain_apps:starlette_app", 1),
    ("uvicorn", "tests.integration.plain_apps:bare_app", 1),  # no lifespan support of its own
    ("uvicorn", "tests.integration.plain_apps:starlette_app", 2),
    ("gunicorn", "tests.integration.plain_apps:starlette_app", 2),
])
def test_sigterm_delivers_every_request_and_only_serving_processes_push(rotel, server, app, workers):
    port = free_port()
    command = [str(BIN / "opentelemetry-instrument"), *SERVERS[server](app, port, workers)]
    process = Process(command, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint("http/protobuf"), "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # nothing is pushed before the signal: only the final flush counts
        "OTEL_SERVICE_NAME": f"shutdown-{server}", "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: local_http.get(url + "/health", timeout=2).status_code < 500, f"{server} answering")
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(REQUESTS):
                assert client.get(f"/hello/{i}", headers={"connection": "close"}).status_code == 200
        process.popen.send_signal(signal.SIGTERM)  # to the main process only, as an orchestrator does
        assert process.popen.wait(60) in (0, -signal.SIGTERM), process.log()
        workers_seen = {int(pid) for pid in re.findall(WORKER_PIDS[server], process.log())}
        assert len(workers_seen) == workers, process.log()
        wait_for(lambda: sum(_final_counts(rotel.log()).values()) == REQUESTS,
                 f"{REQUESTS} requests at the receiver after SIGTERM (got {_final_counts(rotel.log())})")
        reporting = _reporting_pids(rotel.log())
        assert reporting <= workers_seen, f"only serving workers push: {reporting} vs workers {workers_seen}"
        if workers > 1:
            assert process.popen.pid not in reporting, "the pre-fork master pushed nothing"
    finally:
        process.stop()
