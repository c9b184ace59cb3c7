"""The command line against real instrumented servers: record, report, watch (in a real
pseudo-terminal) and doctor (against a real Prometheus and a real OTLP receiver, then broken)."""

from __future__ import annotations

import csv
import re
import subprocess
import threading
import time

import httpx
import pexpect
import pytest
from PIL import Image

from otel_llm_metrics.cli.report import PLOTS
from tests import local_http
from tests.integration.servers import BIN, AppServer, Prometheus, Rotel, free_port, wait_for

APP = "tests.integration.plain_apps:starlette_app"
CLI = str(BIN / "otel-llm-metrics")


class PacedLoad(threading.Thread):
    """``per_second`` requests a second to /hello/x until stopped; counts the answers."""

    def __init__(self, url: str, per_second: float) -> None:
        super().__init__(daemon=True)
        self.url, self.pause = url, 1 / per_second
        self.answered = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            next_at = time.monotonic()
            while not self.stopping.is_set():
                try:
                    client.get("/hello/x")
                    self.answered += 1
                except httpx.HTTPError:
                    pass  # the server is away (the watch test stops it on purpose)
                next_at += self.pause
                time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@pytest.fixture
def app():
    server = AppServer(APP).wait_ready("/health")
    yield server
    server.stop()


def test_record_writes_one_row_per_interval_and_the_rates_add_up(app, tmp_path):
    path = tmp_path / "load.csv"
    recorder = subprocess.Popen([CLI, "record", app.metrics_url, "--csv", str(path), "--interval", "1",
                                 "--duration", "6"], stderr=subprocess.PIPE, text=True)
    assert "first reading taken" in recorder.stderr.readline()  # the rows count from there
    sent = 0
    with httpx.Client(base_url=app.url) as client:
        for _ in range(150):
            client.get("/hello/x")
            sent += 1
    assert recorder.wait(30) == 0, recorder.stderr.read()
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 6, rows
    # about a second each: a scrape late under load makes its row long and the next one short
    assert all(0.25 < float(r["seconds"]) < 2.0 for r in rows), [r["seconds"] for r in rows]
    total = sum(float(r["requests_per_s"]) * float(r["seconds"]) for r in rows)
    assert round(total) == sent
    busy = [r for r in rows if float(r["requests_per_s"]) > 0]
    assert busy and all(r["latency_p95_ms"] for r in busy) and all(r["rss_mib"] for r in rows)
    assert all(r["ttft_p50_ms"] == "" for r in rows), "no LLM traffic: blank, not 0"

    out = tmp_path / "report"
    done = subprocess.run([CLI, "report", str(path), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for file_name, title, _, _ in PLOTS:
        image = Image.open(out / file_name)
        assert image.size == (800, 320) and image.text.get("Title") == title
        assert len(image.convert("L").getcolors(256)) > 10, f"{file_name} has something drawn on it"
    markdown = (out / "report.md").read_text()
    assert f"| requests | {sent} (0 errors) |" in markdown
    assert all(f"]({file_name})" in markdown for file_name, *_ in PLOTS)


def _rate_on_screen(child: pexpect.spawn, deadline_s: float = 30) -> float:
    child.expect(r"/hello/\{name\}\s+([\d.]+)\s", timeout=deadline_s)
    return float(child.match.group(1))


def test_watch_shows_the_rate_and_survives_the_endpoint_going_away(tmp_path):
    server = AppServer(APP).wait_ready("/health")
    load = PacedLoad(server.url, 20)
    load.start()
    child = pexpect.spawn(CLI, ["watch", server.metrics_url, "--interval", "1"], env={"NO_COLOR": "1",
                          "TERM": "xterm", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, dimensions=(60, 200),
                          encoding="utf-8", timeout=30)
    try:
        wait_for(lambda: 14 <= _rate_on_screen(child) <= 26, "about 20 req/s on screen", deadline_s=40)
        server.popen.send_signal(2)
        server.popen.wait(20)
        child.expect("retrying every 1s", timeout=30)
        server = AppServer(APP, port=server.port, metrics_port=server.metrics_port).wait_ready("/health")
        wait_for(lambda: 14 <= _rate_on_screen(child) <= 26, "the rate again, from the new process", deadline_s=40)
        child.sendintr()
        child.expect(pexpect.EOF, timeout=20)
        child.close()
        assert child.exitstatus == 0, "Ctrl-C is a clean exit"
    finally:
        load.stop()
        child.close(force=True)
        server.stop()


def _doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run([CLI, "doctor", *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})
    return done.returncode, done.stdout + done.stderr


def test_doctor_passes_a_healthy_pipeline_and_names_every_failure_with_a_fix(app):
    rotel = Rotel()
    prometheus = Prometheus([f"127.0.0.1:{app.metrics_port}"])
    try:
        local_http.get(app.url + "/hello/x")
        wait_for(lambda: any(t["health"] == "up" for t in local_http.get(
            prometheus.url + "/api/v1/targets").json()["data"]["activeTargets"]), "Prometheus scraping the app")
        for protocol in ("grpc", "http/protobuf"):
            code, output = _doctor(app.metrics_url, "--otlp", rotel.endpoint(protocol), "--prometheus",
                                   prometheus.url, env={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
            assert code == 0 and "FAIL" not in output, output
            assert output.count("OK  ") == 4, output

        broken = {
            "nothing listens": ((f"http://127.0.0.1:{free_port()}/metrics",), {},
                                "metrics endpoint", "does not answer", "start the app"),
            "another program on the port": ((prometheus.url + "/metrics",), {},
                                            "metrics endpoint", "another program holds port", "free port"),
            "OTLP down": ((app.metrics_url, "--otlp", f"http://127.0.0.1:{free_port()}"), {},
                          "OTLP", "does not accept an export", "start the collector"),
            "not scraped": ((app.metrics_url, "--prometheus", prometheus.url), {},
                            None, None, None),
            "a bad setting": ((app.metrics_url,), {"OTEL_EXPORTER_PROMETHEUS_PORT": "ninety"},
                              "settings", "OTEL_EXPORTER_PROMETHEUS_PORT='ninety' is not valid",
                              "OTEL_EXPORTER_PROMETHEUS_PORT=9464"),
            "metrics sent nowhere": ((app.metrics_url,), {"OTEL_METRICS_EXPORTER": "none"},
                                     "settings", "metrics go nowhere", "OTEL_METRICS_EXPORTER=prometheus"),
        }
        other = AppServer(APP).wait_ready("/health")
        try:
            local_http.get(other.url + "/hello/x")
            broken["not scraped"] = ((other.metrics_url, "--prometheus", prometheus.url), {},
                                     "Prometheus", "does not scrape", "add a scrape target")
            for case, (args, env, check, what, fix) in broken.items():
                code, output = _doctor(*args, env=env)
                assert code == 1, f"{case}: {output}"
                failed = [line for line in output.splitlines() if line.startswith("FAIL")]
                assert len(failed) == 1 and failed[0].startswith(f"FAIL {check}") and what in failed[0], \
                    f"{case}: {output}"
                assert re.search(rf"Fix: .*{re.escape(fix)}", output), f"{case}: {output}"
        finally:
            other.stop()
    finally:
        prometheus.stop()
        rotel.stop()
