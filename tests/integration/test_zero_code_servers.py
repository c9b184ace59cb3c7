"""`opentelemetry-instrument <server> <app>` under each ASGI server, in real processes: every request is
counted exactly once (never twice, never zero), the app's lifespan reaches our relay, and after SIGTERM the
server exits as it does bare with the last numbers pushed.

FastAPI and Starlette apps are measured where they build their middleware stack; a bare ASGI callable
where the server loads it (otel_llm_metrics/server_loaders.py). A missing server is a failure, not a skip.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess

import httpx
import pytest

from otel_llm_metrics.cli import parse
from tests import local_http
from tests.integration.servers import BIN, ROOT, Process, Rotel, free_port, wait_for

pytestmark = pytest.mark.integration
REQUESTS = 5

# {app}: module:attribute; {path}: the app's file (fastapi run finds the app in it); {port}: the app's port.
SERVERS = {
    "uvicorn": ["uvicorn", "{app}", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"],
    "gunicorn": ["gunicorn", "{app}", "-b", "127.0.0.1:{port}", "-k", "uvicorn.workers.UvicornWorker"],
    "hypercorn-asyncio": ["hypercorn", "--bind", "127.0.0.1:{port}", "--worker-class", "asyncio", "{app}"],
    "hypercorn-trio": ["hypercorn", "--bind", "127.0.0.1:{port}", "--worker-class", "trio", "{app}"],
    "granian": ["granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}", "{app}"],
    "fastapi-run": ["fastapi", "run", "{path}", "--host", "127.0.0.1", "--port", "{port}"],
    # no loader hook at all: FastAPI and Starlette apps only (a bare callable needs setup() there)
    "hypercorn-api": ["python", "-m", "tests.integration.unhooked_server", "{port}", "{app}"],
}
# How each server ends on SIGTERM, bare or instrumented: uvicorn re-raises it once its shutdown is done.
SIGTERM_STATUS = {"uvicorn": -signal.SIGTERM, "fastapi-run": -signal.SIGTERM, "gunicorn": 0, "hypercorn-asyncio": 0,
                  "hypercorn-trio": 0, "granian": 0, "hypercorn-api": 0}
APPS = {  # target, the file fastapi run is given, the route label (None: a bare callable has none)
    "fastapi": ("tests.integration.fastapi_app:app", "tests/integration/fastapi_app.py", "/hello/{name}"),
    "starlette": ("tests.integration.plain_apps:starlette_app", None, "/hello/{name}"),
    "bare": ("tests.integration.plain_apps:bare_app", None, None),
}
ONLY = {"fastapi-run": ("fastapi",), "hypercorn-api": ("fastapi", "starlette")}
CASES = [(server, app) for server in SERVERS for app in APPS if app in ONLY.get(server, APPS)]


@pytest.fixture(scope="module")
def rotel():
    receiver = Rotel()
    yield receiver
    receiver.stop()


def _command(server: str, app: str, port: int) -> list[str]:
    binary = BIN / SERVERS[server][0]
    if not binary.exists():
        pytest.fail(f"{binary} is not installed: pip install -e '.[test]' (the test extra has every server)")
    target, path, _ = APPS[app]
    return [str(BIN / "opentelemetry-instrument"), str(binary),
            *(part.format(app=target, path=path, port=port) for part in SERVERS[server][1:])]


def _counts(metrics_url: str) -> dict[str | None, float]:
    """Requests counted on the endpoint, by http.route (None: no route label)."""
    _, histograms = parse(local_http.get(metrics_url, timeout=5).text)
    counts: dict[str | None, float] = {}
    for key, data in histograms.get("http_server_request_duration_seconds", {}).items():
        route = dict(key).get("http_route")
        counts[route] = counts.get(route, 0) + data.count
    return counts


def _pushed(log: str, service: str) -> int:
    """Requests the receiver got last from this service's processes (cumulative, summed over processes)."""
    last: dict[str, int] = {}
    for block in re.split(r"\n(?=ResourceMetrics #)", log)[1:]:
        instance = re.search(r"service\.instance\.id: Str\(([^)]*)\)", block)
        if f"service.name: Str({service})" not in block or instance is None:
            continue
        for metric in re.split(r"\n(?=Metric #)", block):
            if "-> Name: http.server.request.duration\n" in metric:
                total = sum(int(n) for n in re.findall(r"\nCount: (\d+)", metric))
                last[instance.group(1)] = max(last.get(instance.group(1), 0), total)
    return sum(last.values())


def _listening(process: Process, port: int) -> bool:
    if process.popen.poll() is not None:
        pytest.fail(f"the server exited with {process.popen.returncode}:\n{process.log()}")
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(("server", "app"), CASES, ids=[f"{server}-{app}" for server, app in CASES])
def test_each_request_is_counted_once_under_each_server(server, app, rotel):
    port, metrics_port = free_port(), free_port()
    service = f"zero-code-{server}-{app}"
    process = Process(_command(server, app, port), {
        "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": service, "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
        "OTEL_METRICS_EXPORTER": "prometheus,otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint("http/protobuf"), "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        "OTEL_TRACES_EXPORTER": "none", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai"})  # its import: 1 s a process
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        wait_for(lambda: _listening(process, port), f"{server} listening")
        # Before any request: the endpoint starts when the lifespan scope reaches our relay.
        assert wait_for(lambda: _counts(metrics_url) == {}, "the endpoint serving, no request yet")
        route = APPS[app][2]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for i in range(REQUESTS):
                assert client.get(f"/hello/{i}").status_code == 200
        wait_for(lambda: sum(_counts(metrics_url).values()) >= REQUESTS, f"{REQUESTS} requests counted")
        assert _counts(metrics_url) == {route: REQUESTS}, f"each request once, on its route:\n{process.log()}"

        process.popen.send_signal(signal.SIGTERM)  # to the main process, as an orchestrator does
        assert process.popen.wait(30) == SIGTERM_STATUS[server], process.log()
        assert "Traceback" not in process.log() and "could not" not in process.log(), process.log()
        wait_for(lambda: _pushed(rotel.log(), service) == REQUESTS,
                 f"the last numbers pushed at exit (got {_pushed(rotel.log(), service)})", 10)
    finally:
        process.stop()


# Loads each target the way a server does, in one process under opentelemetry-instrument, and counts our
# middlewares from what the server would call down into the stack the app builds at its first call.
_COUNT_OURS = """
import json, sys
from uvicorn.config import Config
from hypercorn.utils import load_application
from otel_llm_metrics.frameworks import wrapper_chain
from otel_llm_metrics.http.middleware import MetricsMiddleware
from otel_llm_metrics.server_loaders import load_granian_target

def ours(app):
    found = 0
    for inner in wrapper_chain(app):
        found += isinstance(inner, MetricsMiddleware)
        if hasattr(inner, "build_middleware_stack"):
            if inner.middleware_stack is None:
                inner.middleware_stack = inner.build_middleware_stack()
            found += ours(inner.middleware_stack)
    return found

def uvicorn(target):
    config = Config(target)
    config.load()
    return config.loaded_app

def imported(target):  # by a server zero code has no hook for
    module, name = target.split(":")
    return getattr(__import__(module, fromlist=[name]), name)

loaders = {"uvicorn": uvicorn, "hypercorn": lambda target: load_application(target, 1 << 20),
           "granian": load_granian_target, "none": imported}
print(json.dumps({case: ours(loaders[case.split()[0]](case.split()[1])) for case in sys.argv[1:]}))
"""
_LOADERS = ("uvicorn", "hypercorn", "granian", "none")
_UNMODIFIED = {f"{loader} tests.integration.{target}": 1 for target in ("fastapi_app:app", "plain_apps:starlette_app",
                                                                        "plain_apps:bare_app") for loader in _LOADERS}
_UNMODIFIED["none tests.integration.plain_apps:bare_app"] = 0  # a bare callable needs a server's loader, or setup()
_BY_HAND = {f"{loader} tests.integration.{target}": 1 for loader in _LOADERS[:3] for target in (
    "lifespan_apps:starlette_wrapped", "lifespan_apps:bare_wrapped",  # setup(app), setup().instrument(app)
    "fastapi_app:outer")}  # a FastAPI app inside a plain ASGI wrapper of the user's


@pytest.mark.parametrize("expected", [_UNMODIFIED, _BY_HAND], ids=["unmodified", "by-hand-and-outer-wrapper"])
def test_each_loader_leaves_exactly_one_middleware_on_the_path(expected):
    """The counts above cannot see a second middleware (it steps aside for a measured request): this can."""
    result = subprocess.run([str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", _COUNT_OURS, *expected],
                            env={"PATH": str(BIN), "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none",
                                 "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai"},
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
