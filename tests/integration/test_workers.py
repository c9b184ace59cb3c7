"""One scrape target per multi-worker server, read by a real Prometheus (issue 10).

Real uvicorn --workers 4 and gunicorn -w 4 serve real HTTP; requests go over fresh connections so
they spread over the workers (each answer names its worker). A worker is SIGKILLed, the holder of
the endpoint included: the totals stay exact and Prometheus sees no counter reset.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests import local_http
from tests.integration.servers import BIN, GUNICORN_STOP, Process, Prometheus, free_port, wait_for

ROUTE_COUNT = 'sum(http_server_request_duration_seconds_count{{instance="{target}",http_route="/hello/{{name}}"}})'
ANNOUNCED = re.compile(r"otel_llm_metrics: metrics on (http://\S+/metrics) "
                       r"\(pid (\d+), for all workers of this server\)( \(port \d+ is taken by another program\))?")


class Server(Process):
    """A multi-worker server on a free port; its metrics port is configured, and may be shared."""

    def __init__(self, kind: str, workers: int, metrics_port: int, app: str, zero_code: bool,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        if kind == "uvicorn":
            # uvicorn kills a worker that does not answer its health check within 5 s (the default) and
            # starts another; under zero code a spawned worker imports every instrumentor first (~2 s of
            # CPU), so on a busy host each replacement was killed in turn and none ever served.
            command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                       "--workers", str(workers), "--timeout-worker-healthcheck", "60"]
        else:
            command = [str(BIN / "gunicorn"), app, "-b", f"127.0.0.1:{self.port}", "-w", str(workers),
                       "-k", "uvicorn.workers.UvicornWorker"]
            self.stop_signal = GUNICORN_STOP
        if zero_code:
            command = [str(BIN / "opentelemetry-instrument"), *command]
        super().__init__(command, {"OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port), "PYTHONPATH": ".",
                                   **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"
        self.answered = 0  # every response received: what the server must have counted
        self._lock = threading.Lock()
        # One client for every request (a client per request loaded the CA bundle each time: ~40 ms of
        # CPU, a whole core at 8 threads, taken from the workers); "connection: close" still makes
        # each request a fresh connection, which the kernel hands to any worker.
        self._client = httpx.Client(base_url=self.url, headers={"connection": "close"}, timeout=10)

    def announcements(self) -> list[tuple[str, int]]:
        """(metrics URL, pid) each time a worker started serving the server's endpoint."""
        return [(url, int(pid)) for url, pid, _ in ANNOUNCED.findall(self.log())]

    def holder(self) -> tuple[str, int]:
        wait_for(self.announcements, f"{self.command} announcing its metrics endpoint")
        return self.announcements()[-1]

    def send(self, count: int, threads: int = 8) -> collections.Counter:
        """``count`` requests, each on its own connection; how many each worker answered."""
        def one(_: int) -> str:
            response = self._client.get("/hello/x")
            with self._lock:
                self.answered += 1
            return response.headers.get("x-worker-pid", "none")
        with ThreadPoolExecutor(threads) as pool:
            return collections.Counter(pool.map(one, range(count)))

    def wait_workers(self, workers: int) -> None:
        answering: collections.Counter = collections.Counter()

        def all_answer() -> bool:
            nonlocal answering
            if self.popen.poll() is not None:
                pytest.fail(f"server exited with {self.popen.returncode}:\n{self.log()}")
            answering = self.send(16 * workers)
            return len(answering) == workers
        try:
            wait_for(all_answer, f"all {workers} workers answering", deadline_s=60)
        except pytest.fail.Exception as failed:
            raise AssertionError(f"{failed}; the last round was answered by {dict(answering)}; "
                                 f"server log:\n{self.log()[-6000:]}") from None

    def stop(self, timeout: float = 10.0) -> int | None:
        self._client.close()
        return super().stop(timeout)


@pytest.fixture(scope="module")
def prometheus():
    server = Prometheus([], flags=("--enable-feature=exemplar-storage",))
    yield server
    server.stop()


@pytest.mark.parametrize(("kind", "app", "zero_code"), [
    ("uvicorn", "tests.integration.plain_apps:starlette_app", True),
    ("gunicorn", "tests.integration.setup_app:app", False),
])
def test_one_target_exact_totals_through_a_worker_kill(prometheus, kind, app, zero_code):
    workers, n = 4, 2000
    server = Server(kind, workers, free_port(), app, zero_code)
    try:
        server.wait_workers(workers)
        url, holder_pid = server.holder()
        target = url.removeprefix("http://").removesuffix("/metrics")
        assert len({u for u, _ in server.announcements()}) == 1, "one endpoint, announced once"
        prometheus.add_target(target)

        assert len(server.send(n)) == workers, "the load reached every worker"
        promql = ROUTE_COUNT.format(target=target)
        prometheus.wait_value(promql, server.answered)
        prometheus.wait_value(f'count(process_memory_usage_bytes{{instance="{target}"}})', workers)

        os.kill(holder_pid, signal.SIGKILL)  # the worker serving the endpoint, mid-life
        wait_for(lambda: server.announcements()[-1][1] != holder_pid, "another worker taking the endpoint over")
        assert server.announcements()[-1][0] == url, "the same URL after the take-over"
        server.wait_workers(workers)  # the master has started a replacement
        assert str(holder_pid) not in server.send(n)
        prometheus.wait_value(promql, server.answered, 60)  # nothing lost, nothing counted twice (slow under load)
        resets = f'sum(resets(http_server_request_duration_seconds_count{{instance="{target}"}}[10m]))'
        assert prometheus.value(resets) == 0
        live = f'process_memory_usage_bytes{{instance="{target}"}}'
        wait_for(lambda: len(prometheus.query(live)) == workers, "one memory series per live worker")
        pids = {result["metric"]["process_pid"] for result in prometheus.query(live)}
        assert str(holder_pid) not in pids, "the dead worker's gauges are gone"
    finally:
        server.stop()


def _route_count(url: str) -> float:
    text = local_http.get(url, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_server_request_duration_seconds_count{")
               and 'http_route="/hello/{name}"' in line)


def test_two_servers_on_one_host_never_mix():
    """Both are configured with the same metrics port: the second serves on the next free one."""
    port = free_port()
    first = Server("uvicorn", 2, port, "tests.integration.plain_apps:starlette_app", zero_code=True)
    second = Server("uvicorn", 2, port, "tests.integration.plain_apps:starlette_app", zero_code=True)
    try:
        first.wait_workers(2)
        second.wait_workers(2)
        first.send(30)
        second.send(50)
        urls = {server: server.holder()[0] for server in (first, second)}
        assert len(set(urls.values())) == 2, urls
        assert "is taken by another program" in (first.log() + second.log())
        for server in (first, second):
            wait_for(lambda server=server: _route_count(urls[server]) == server.answered,
                     f"{server.answered} requests on {urls[server]} (last: {_route_count(urls[server])})")
            page = local_http.get(urls[server]).text
            assert 'service_name="tests.integration.plain_apps"' in page, "named after the app, in every worker"
    finally:
        first.stop()
        second.stop()


def test_app_port_serves_the_whole_server_and_leaves_itself_out():
    server = Server("uvicorn", 2, free_port(), "tests.integration.plain_apps:starlette_app", zero_code=True,
                    env={"OTEL_LLM_METRICS_APP_METRICS_PATH": "/metrics", "OTEL_LLM_METRICS_WORKERS_INTERVAL": "0.2"})
    try:
        server.wait_workers(2)
        server.send(40)
        seen: list[float] = []
        for _ in range(30):  # fresh connections: the scrapes land on both workers
            response = local_http.get(server.url + "/metrics", headers={"connection": "close"}, timeout=5)
            assert response.status_code == 200
            assert "http_route=\"/metrics\"" not in response.text, "the page is left out of its own metrics"
            seen.append(sum(float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines()
                            if line.startswith("http_server_request_duration_seconds_count{")))
        assert seen == sorted(seen), f"never goes back, whichever worker answers: {seen}"
        wait_for(lambda: _route_count(server.url + "/metrics") == server.answered, "every request on the app port")
        openmetrics = local_http.get(server.url + "/metrics", headers={"accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")
    finally:
        server.stop()


def test_exemplars_reach_prometheus(prometheus):
    server = Server("uvicorn", 2, free_port(), "tests.integration.plain_apps:starlette_app", zero_code=True,
                    env={"OTEL_TRACES_EXPORTER": "console"})
    try:
        server.wait_workers(2)
        target = server.holder()[0].removeprefix("http://").removesuffix("/metrics")
        prometheus.add_target(target)
        trace_ids: set[str] = set()
        with httpx.Client(base_url=server.url) as client:
            for _ in range(20):
                trace_ids.add(client.get("/hello/x", headers={"connection": "close"}).headers["x-request-id"])
        query = f'http_server_request_duration_seconds_bucket{{instance="{target}"}}'

        def exemplar_ids() -> set[str]:
            response = local_http.get(prometheus.url + "/api/v1/query_exemplars",
                                 params={"query": query, "start": "0", "end": "9999999999"}, timeout=5)
            return {exemplar["labels"]["trace_id"] for series in response.json()["data"]
                    for exemplar in series["exemplars"]}
        wait_for(lambda: exemplar_ids() & trace_ids, "an exemplar with the trace id of a request we sent")
    finally:
        server.stop()
