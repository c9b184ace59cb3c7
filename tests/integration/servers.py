"""Real servers for integration tests: started on free loopback ports, stopped by their own PID.

A missing binary is a failure, never a skip: ``make test`` installs them on a fresh machine. Their logs and data
live in one scratch directory per test process, removed when it exits (a suite used to leave a thousand logs).
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests import local_http

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRATCH = Path(tempfile.mkdtemp(prefix="otel-llm-tests-"))
SCRATCH.chmod(0o755)  # PostgreSQL runs as its own user when we are root: it must reach its data below
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], what: str | Callable[[], str], deadline_s: float = 30.0,
             interval: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at the deadline (a callable:
    asked then, so that it can say what was last seen)."""
    deadline = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError, KeyError, IndexError) as exc:
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"{what() if callable(what) else what}: not reached within {deadline_s}s (last error: {last_error})")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test` (scripts/install-system-deps.sh installs it)")
    return path


# gunicorn stops on SIGTERM, as an orchestrator sends it. SIGINT is its quick stop, which a uvicorn worker does not
# end: the master then waits out its graceful timeout (30 s by default, bare too: measured) before it SIGKILLs them,
# and a test's teardown waited its whole 10 s before its own SIGKILL.
GUNICORN_STOP = signal.SIGTERM


class Process:
    """A child process with its output in a log file, stopped by PID (``stop_signal``, then SIGKILL)."""

    stop_signal = signal.SIGINT

    def __init__(self, command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="proc-", suffix=".log", dir=SCRATCH)[1])
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.command = command
        self.popen = subprocess.Popen(command, env={**os.environ, **(env or {})}, cwd=cwd, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


class AppServer(Process):
    """uvicorn serving an unmodified app through ``opentelemetry-instrument`` (zero code)."""

    def __init__(self, app: str, env: dict[str, str] | None = None, workers: int = 1,
                 zero_code: bool = True, port: int | None = None, metrics_port: int | None = None) -> None:
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(self.port),
                   "--no-access-log", "--workers", str(workers), "--timeout-worker-healthcheck", "60"]
        if zero_code:
            command = [str(BIN / "opentelemetry-instrument"), *command]
        base_env = {"OTEL_EXPORTER_PROMETHEUS_PORT": str(self.metrics_port), "PYTHONPATH": str(ROOT),
                    "DEMO_FIRST_TOKEN_MS": "20", "DEMO_TOKENS_PER_SECOND": "500"}
        super().__init__(command, {**base_env, **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_ready(self, path: str = "/health") -> AppServer:
        def ready() -> bool:
            if self.popen.poll() is not None:
                pytest.fail(f"app exited with {self.popen.returncode}:\n{self.log()}")
            return local_http.get(self.url + path, timeout=2).status_code < 500
        wait_for(ready, f"{self.command} answering {path}")
        return self


class Prometheus(Process):
    def __init__(self, targets: list[str], rules: list[Path] | None = None, alertmanager: str | None = None,
                 flags: tuple[str, ...] = ()) -> None:
        binary = require_binary("prometheus")
        self.dir = Path(tempfile.mkdtemp(prefix="prom-", dir=SCRATCH))
        self.port = free_port()
        rule_lines = "".join(f"  - {p}\n" for p in rules or [])
        self.targets = list(targets)
        self._write_targets()
        config = ("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                  + (f"rule_files:\n{rule_lines}" if rule_lines else "")
                  + (f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n"
                     if alertmanager else "")
                  + "scrape_configs:\n  - job_name: app\n    file_sd_configs:\n"
                  + f"      - files: ['{self.dir / 'targets.json'}']\n")
        (self.dir / "prometheus.yml").write_text(config)
        super().__init__([binary, f"--config.file={self.dir / 'prometheus.yml'}",
                          f"--storage.tsdb.path={self.dir / 'data'}",
                          f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                          "--rules.alert.resend-delay=1s", *flags])
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(lambda: local_http.get(self.url + "/-/ready", timeout=2).status_code == 200, "Prometheus ready")

    def _write_targets(self) -> None:
        (self.dir / "targets.json").write_text(json.dumps([{"targets": self.targets}]))

    def add_target(self, target: str) -> None:
        """Scrape one more endpoint (file-based discovery: no restart, ~5 s until the first scrape)."""
        self.targets.append(target)
        self._write_targets()
        local_http.post(self.url + "/-/reload", timeout=5)

    def query(self, promql: str) -> list[dict]:
        response = local_http.get(self.url + "/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, expected: float, deadline_s: float = 30.0) -> float:
        wait_for(lambda: self.value(promql) == expected,
                 lambda: f"PromQL {promql} == {expected} (last: {self._safe_value(promql)})", deadline_s)
        return expected

    def _safe_value(self, promql: str) -> float | None:
        try:
            return self.value(promql)
        except Exception:  # noqa: BLE001 - only for the failure message
            return None


class Rotel(Process):
    """rotel, a small OTLP collector from PyPI; it logs what it receives in the debug format."""

    def __init__(self) -> None:
        import rotel

        binary = Path(rotel.__file__).parent / "rotel-agent"
        self.grpc_port, self.http_port = free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rotel-", dir=SCRATCH))
        super().__init__([str(binary), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                          "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}", "--exporter", "blackhole",
                          "--debug-log", "traces", "--debug-log", "metrics", "--debug-log-verbosity", "detailed",
                          "--disable-batching", "--pid-file", str(self.dir / "rotel.pid")],
                         # its binary links libpython of the wheel's version: where the interpreter keeps it
                         {"LD_LIBRARY_PATH": os.pathsep.join(filter(None, (sysconfig.get_config_var("LIBDIR"),
                                                                           os.environ.get("LD_LIBRARY_PATH"))))})
        for port in (self.grpc_port, self.http_port):
            wait_for(lambda p=port: self._listening(p), f"rotel listening on {port}")

    def _listening(self, port: int) -> bool:
        if self.popen.poll() is not None:
            pytest.fail(f"rotel exited with {self.popen.returncode}:\n{self.log()}")
        return _port_open(port)

    def endpoint(self, protocol: str) -> str:
        return f"http://127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Redis(Process):
    def __init__(self) -> None:
        self.port = free_port()
        super().__init__([require_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        wait_for(lambda: _port_open(self.port), "redis-server listening")


class Postgres(Process):
    """A throwaway cluster: initdb in a temp dir, trust auth on 127.0.0.1 (as user postgres if we are root)."""

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bindirs:
            pytest.fail("PostgreSQL is not installed: run `make test` (scripts/install-system-deps.sh installs it)")
        bindir = Path(bindirs[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir=SCRATCH))
        self.port = free_port()
        as_user: list[str] = []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        super().__init__([*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                          "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off", "-c", "max_connections=60"])
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        wait_for(self._accepts, "PostgreSQL accepting connections", deadline_s=60)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (PostgreSQL's fast shutdown) to the whole group: run as its own user, ``runuser`` does not pass
        it on, and each teardown waited the full 10 s for the SIGKILL."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        return super().stop(timeout)

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                return conn.execute("select 1").fetchone() == (1,)
        except psycopg.Error:
            return False


class Alertmanager(Process):
    def __init__(self, config: str) -> None:
        binary = require_binary("prometheus-alertmanager")
        self.dir = Path(tempfile.mkdtemp(prefix="am-", dir=SCRATCH))
        self.port = free_port()
        (self.dir / "alertmanager.yml").write_text(config)
        super().__init__([binary, f"--config.file={self.dir / 'alertmanager.yml'}",
                          f"--storage.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                          "--cluster.listen-address="])
        self.address = f"127.0.0.1:{self.port}"
        ready = f"http://{self.address}/-/ready"
        wait_for(lambda: local_http.get(ready, timeout=2).status_code == 200, "Alertmanager ready")
