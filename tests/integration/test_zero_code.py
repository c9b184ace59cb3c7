"""`opentelemetry-instrument uvicorn app:app` on unmodified apps, in real subprocesses."""

from __future__ import annotations

import re
import subprocess

import pytest

from otel_llm_metrics.cli import parse
from tests import local_http
from tests.integration.servers import BIN, ROOT, AppServer, wait_for

pytestmark = pytest.mark.integration


def _count(metrics_url: str, **labels: str) -> float:
    _, histograms = parse(local_http.get(metrics_url, timeout=5).text)
    series = histograms.get("http_server_request_duration_seconds", {})
    return sum(data.count for key, data in series.items()
               if all(dict(key).get(k) == v for k, v in labels.items()))


@pytest.mark.parametrize(("app", "path", "route"), [
    ("tests.integration.plain_apps:starlette_app", "/hello/ada", "/hello/{name}"),
    ("tests.integration.plain_apps:bare_app", "/anything/at/all", None),
])
def test_unmodified_app_is_measured(app, path, route):
    server = AppServer(app)
    try:
        server.wait_ready(path)
        for _ in range(5):
            assert local_http.get(server.url + path).status_code == 200
        labels = {"http_route": route} if route else {}
        wait_for(lambda: _count(server.metrics_url, **labels) == 6, "6 requests counted (5 + readiness)")
        if route is None:
            text = local_http.get(server.metrics_url).text
            assert "http_route=" not in re.sub(r"(?m)^#.*$", "", text.split("http_server_request_duration")[1][:2000])
        assert _announced_urls(server) == [server.metrics_url], "one visible line says where metrics are served"
    finally:
        assert server.stop() == 0, server.log()


def test_invalid_setting_stops_start_up_with_a_message_naming_it():
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", "print('app ran')"],
        env={"PATH": str(BIN), "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_PROMETHEUS_PORT": "ninety"},
        capture_output=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert b"app ran" not in result.stdout
    assert b"OTEL_EXPORTER_PROMETHEUS_PORT='ninety'" in result.stderr


def test_a_host_the_endpoint_cannot_listen_on_stops_start_up():
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", "print('app ran')"],
        env={"PATH": str(BIN), "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_PROMETHEUS_HOST": "no-such-host.invalid"},
        capture_output=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and b"app ran" not in result.stdout
    assert b"Fix: OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1" in result.stderr


def test_zero_code_names_the_service_after_the_app_it_serves():
    server = AppServer("tests.integration.plain_apps:starlette_app", env={"OTEL_SERVICE_NAME": ""})
    try:
        server.wait_ready("/hello/x")
        text = wait_for(lambda: local_http.get(server.metrics_url, timeout=2).text, "metrics served")
        assert 'service_name="tests.integration.plain_apps"' in text
        assert "unknown_service" not in text
    finally:
        server.stop()


def test_one_scrape_has_one_set_of_process_metrics():
    """Ours (process.*, cpython.gc.*), not prometheus_client's default collectors beside them."""
    server = AppServer("tests.integration.plain_apps:starlette_app")
    try:
        server.wait_ready("/hello/x")
        text = wait_for(lambda: local_http.get(server.metrics_url, timeout=2).text, "metrics served")
        assert "process_cpu_time_seconds_total" in text and "cpython_gc_collections_total" in text
        for theirs in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_gc_objects_collected",
                       "python_info"):
            assert theirs not in text
    finally:
        server.stop()


def _announced_urls(server: AppServer) -> list[str]:
    """The metrics URLs the server's processes said they serve (one visible line each)."""
    return re.findall(r"otel_llm_metrics: metrics on (http://\S+/metrics) \(pid \d+", server.log())


@pytest.mark.parametrize("variable", ["OTEL_PYTHON_ID_GENERATOR", "OTEL_LOGS_EXPORTER"])
def test_a_name_the_sdks_configuration_cannot_find_stops_start_up_and_the_fix_starts(variable):
    """The SDK's configuration raises for a component no package provides; opentelemetry-instrument alone would
    log it and run the app without telemetry. Ours stops, names the variable and a fix, and the fix starts."""
    def run(value: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", "print('app ran')"],
            env={"PATH": str(BIN), "PYTHONPATH": str(ROOT), "OTEL_METRICS_EXPORTER": "none", variable: value},
            capture_output=True, text=True, timeout=60, cwd=ROOT)

    refused = run("no-such-component")
    assert refused.returncode == 2 and "app ran" not in refused.stdout, refused.stdout + refused.stderr
    assert f"{variable}='no-such-component' is not valid" in refused.stderr, refused.stderr
    fix = re.search(rf"Fix: {variable}=(\S+)", refused.stderr).group(1)
    fixed = run(fix)
    assert fixed.returncode == 0 and "app ran" in fixed.stdout, fixed.stderr
