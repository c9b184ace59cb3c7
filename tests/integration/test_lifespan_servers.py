"""Real servers: a wrapped app starts, fails and stops exactly as it does bare, under asyncio and trio, and
the exit is bounded once, whichever way out runs, with a collector that never answers."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import httpx
import pytest

from tests import local_http
from tests.integration.servers import BIN, ROOT, Process, Rotel, _port_open, free_port, wait_for
from tests.integration.test_shutdown import _final_counts

pytestmark = pytest.mark.integration
_LOG_LINE = re.compile(r"^(?:(?:INFO|WARNING|ERROR|CRITICAL):.*|\w+(?:\.\w+)*(?:Error|Exception): .*)$", re.M)


def _server_lines(log: str) -> list[str]:
    """The server's own log lines and the exceptions it printed, pids and ports left out; ours dropped."""
    lines = [line for line in _LOG_LINE.findall(log) if "otel_llm_metrics" not in line]
    return [re.sub(r"\[\d+\]|:\d{2,5}\b", "#", " ".join(line.split())) for line in lines]


def _run_until_stopped(command: list[str], port: int, env: dict[str, str]) -> tuple[int, list[str], bool]:
    """Exit status, the server's log lines and whether the port ever opened; SIGTERM once it serves."""
    process = Process(command, {"PYTHONPATH": str(ROOT), "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port()), **env})
    try:
        opened = wait_for(lambda: "exited" if process.popen.poll() is not None else _port_open(port),
                          "the server serving or exiting") is True
        if opened:
            assert local_http.get(f"http://127.0.0.1:{port}/", timeout=5).text == "bare"
            process.popen.send_signal(signal.SIGTERM)
        status = process.popen.wait(30)
        return status, _server_lines(process.log()), opened
    finally:
        process.stop()


@pytest.mark.parametrize("lifespan", ["on", "auto"])
def test_a_failing_start_up_ends_the_same_bare_wrapped_and_zero_code(lifespan):
    def outcome(app: str, zero_code: bool = False) -> tuple[int, list[str], bool]:
        port = free_port()
        command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--lifespan", lifespan]
        return _run_until_stopped([str(BIN / "opentelemetry-instrument"), *command] if zero_code else command, port,
                                  {"OTEL_TRACES_EXPORTER": "none"})

    bare = outcome("tests.integration.plain_apps:failing_start_up")
    assert bare[2] is (lifespan == "auto"), f"bare under --lifespan {lifespan}: {bare}"
    assert outcome("tests.integration.lifespan_apps:failing_start_up_wrapped") == bare
    assert outcome("tests.integration.plain_apps:failing_start_up", zero_code=True) == bare


HYPERCORN = [str(BIN / "hypercorn"), "--bind", "127.0.0.1:{port}"]
UVICORN = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]


@pytest.mark.parametrize(("server", "app"), [
    (UVICORN, "bare_wrapped"),
    ([*HYPERCORN, "--worker-class", "asyncio"], "bare_wrapped"),
    ([*HYPERCORN, "--worker-class", "trio"], "bare_wrapped"),
    ([*HYPERCORN, "--worker-class", "trio"], "starlette_wrapped"),
], ids=["uvicorn-bare", "hypercorn-asyncio-bare", "hypercorn-trio-bare", "hypercorn-trio-starlette"])
def test_sigterm_delivers_the_last_numbers_of_apps_with_and_without_lifespan(server, app):
    """uvicorn: its own shutdown is hooked (it re-raises SIGTERM before atexit); hypercorn: atexit or lifespan."""
    rotel = Rotel()
    port = free_port()
    command = [part.format(port=port) for part in server] + [f"tests.integration.lifespan_apps:{app}"]
    process = Process(command, {
        "OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint("http/protobuf"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000", "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: process.popen.poll() is None and _port_open(port), "the server serving")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for i in range(7):
                assert client.get(f"/hello/{i}").status_code == 200
        process.popen.send_signal(signal.SIGTERM)  # to the main process only, as an orchestrator does
        assert process.popen.wait(30) in (0, -signal.SIGTERM), process.log()
        assert "Traceback" not in process.log(), process.log()
        wait_for(lambda: sum(_final_counts(rotel.log()).values()) == 7,
                 f"7 requests at the receiver after SIGTERM (got {_final_counts(rotel.log())})")
    finally:
        process.stop()
        rotel.stop()


class BlackHole:
    """A collector that accepts connections and never answers (gRPC and HTTP alike)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


BOUND_S = 3.0
# What the server and the interpreter take to stop besides our bounded flush: under 1 s on a quiet machine, up to
# 1.1 s measured while other suites ran. The bound spent twice (6 s) or the exporters' own timeouts (10 s) still fail.
TEARDOWN_MARGIN_S = 2.0


@pytest.mark.parametrize(("app", "protocol", "stop_with"), [
    ("tests.integration.plain_apps:starlette_app", "grpc", signal.SIGTERM),
    ("tests.integration.plain_apps:starlette_app", "grpc", signal.SIGINT),
    ("tests.integration.plain_apps:starlette_app", "http/protobuf", signal.SIGTERM),
    ("tests.integration.plain_apps:starlette_app", "http/protobuf", signal.SIGINT),
    ("tests.integration.plain_apps:bare_app", "http/protobuf", signal.SIGINT),  # server hook, then atexit
], ids=["lifespan-grpc-SIGTERM", "lifespan-grpc-SIGINT", "lifespan-http-SIGTERM", "lifespan-http-SIGINT",
        "bare-http-SIGINT"])
def test_the_whole_exit_takes_the_bound_once_when_the_collector_never_answers(app, protocol, stop_with):
    hole = BlackHole()
    port = free_port()
    process = Process([str(BIN / "opentelemetry-instrument"), *[p.format(port=port) for p in UVICORN], app], {
        "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hole.port}", "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        "OTEL_LLM_METRICS_SHUTDOWN_TIMEOUT": str(BOUND_S), "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: process.popen.poll() is None and _port_open(port), "the server serving")
        for i in range(3):
            assert local_http.get(f"http://127.0.0.1:{port}/hello/{i}", timeout=5).status_code == 200
        signalled = time.monotonic()
        process.popen.send_signal(stop_with)
        status = process.popen.wait(BOUND_S + 20)
        took = time.monotonic() - signalled
        print(f"exit after {stop_with.name} with a black-holed {protocol} collector: {took:.2f}s")
        assert status in (0, -stop_with), process.log()
        assert took <= BOUND_S + TEARDOWN_MARGIN_S, f"exit took {took:.2f}s, bound {BOUND_S}s:\n{process.log()}"
    finally:
        process.stop()
        hole.close()
