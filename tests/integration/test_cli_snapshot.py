"""`otel-llm-metrics snapshot --json` against two real instrumented servers after a known workload."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from otel_llm_metrics.cli import SNAPSHOT_SCHEMA
from tests import local_http
from tests.integration.servers import BIN, AppServer, wait_for

pytestmark = pytest.mark.integration
APP = "tests.integration.plain_apps:starlette_app"


def _snapshot(*args: str) -> dict:
    done = subprocess.run([str(BIN / "otel-llm-metrics"), "snapshot", "--json", *args], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0 and "cannot read" in done.stderr:
        # an endpoint that did not answer this once (a fresh clone saw "Connection reset by peer"): wait_for polls
        # again, and names this as the last error if it never answers
        raise ConnectionError(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_servers_merge_exactly_and_rates_come_from_the_state_file(tmp_path):
    servers = [AppServer(APP), AppServer(APP)]
    try:
        for server in servers:
            server.wait_ready("/health")  # excluded from metrics: the counts below are exact
        sent = {0: 7, 1: 5}
        for index, count in sent.items():
            with httpx.Client(base_url=servers[index].url) as client:
                for i in range(count):
                    assert client.get(f"/hello/{i}").status_code == 200
                assert client.get("/nowhere").status_code == 404
        urls = [server.metrics_url for server in servers]
        state = tmp_path / "state.json"
        wait_for(lambda: _snapshot(*urls)["totals"]["requests"] == 14, "both servers' requests in one snapshot")
        first = _snapshot(*urls, "--state", str(state))
        assert first["schema"] == SNAPSHOT_SCHEMA and first["rates"] is None, "no earlier state: no rates"
        routes = {(r["method"], r["route"]): r for r in first["routes"]}
        assert routes[("GET", "/hello/{name}")]["requests"] == 12
        assert routes[("GET", "(unmatched)")]["requests"] == 2
        assert first["totals"] == {"requests": 14, "errors": 0, "input_tokens": 0, "output_tokens": 0,
                                   "upstream_calls": 0, "upstream_attempts": 0, "upstream_errors": 0,
                                   "upstream_input_tokens": 0, "upstream_output_tokens": 0,
                                   "mcp_served_operations": 0, "mcp_served_failed": 0, "mcp_called_operations": 0,
                                   "mcp_called_failed": 0}
        assert first["in_flight"] == 0 and first["peak"] == 1 and first["models"] == []
        duration = routes[("GET", "/hello/{name}")]["duration_s"]
        assert duration["count"] == 12 and duration["mean"] > 0
        low, high = duration["p50"]["bucket"]
        assert low is not None and (high is None or high > low)

        with httpx.Client(base_url=servers[1].url) as client:
            for i in range(6):
                client.get(f"/hello/{i}")
        wait_for(lambda: _snapshot(*urls)["totals"]["requests"] == 20, "six more requests")
        second = _snapshot(*urls, "--state", str(state))
        elapsed = second["time"] - first["time"]
        assert second["rates"]["requests_per_s"] == pytest.approx(6 / elapsed)
        assert second["rates"]["errors_per_s"] == 0
    finally:
        for server in servers:
            server.stop()


def test_the_endpoints_json_is_what_the_cli_prints_for_a_server_of_two_workers():
    """``Accept: application/json`` on the embedded endpoint and on the app's own port: the CLI's schema, all
    workers merged, equal to ``snapshot --json`` of the same endpoint."""
    server = AppServer(APP, env={"OTEL_LLM_METRICS_APP_METRICS_PATH": "/metrics"}, workers=2)
    try:
        server.wait_ready("/health")
        with httpx.Client(base_url=server.url) as client:
            for i in range(9):
                assert client.get(f"/hello/{i}").status_code == 200
            assert client.get("/nowhere").status_code == 404
        json_accept = {"Accept": "application/json"}

        def served(url: str) -> dict:
            response = local_http.get(url, headers=json_accept, timeout=10)
            assert response.headers["content-type"] == "application/json"
            return response.json()

        wait_for(lambda: served(server.metrics_url)["totals"]["requests"] == 10, "both workers' requests")
        embedded, printed = served(server.metrics_url), _snapshot(server.metrics_url)
        app_port = served(server.url + "/metrics")
        assert embedded["schema"] == SNAPSHOT_SCHEMA
        routes = {(r["method"], r["route"]): r["requests"] for r in embedded["routes"]}
        assert routes == {("GET", "/hello/{name}"): 9, ("GET", "(unmatched)"): 1}
        for other in (printed, app_port):
            assert {k: v for k, v in other.items() if k != "time"} == {k: v for k, v in embedded.items()
                                                                      if k != "time"}
        assert local_http.get(server.metrics_url, timeout=10).headers["content-type"].startswith("text/plain")
    finally:
        server.stop()
