from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.servers import ROOT, AppServer, Prometheus


@pytest.fixture(scope="session")
def demo_app():
    """The demo app under `opentelemetry-instrument uvicorn` (zero code, embedded Prometheus)."""
    app = AppServer("otel_llm_metrics.demo.app:app").wait_ready()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def prometheus(demo_app):
    """One real Prometheus per session (its first scrape comes ~5 s after start), scraping the demo."""
    server = Prometheus([f"127.0.0.1:{demo_app.metrics_port}"], rules=[ROOT / "prometheus" / "rules" / "recording.yml"])
    yield server
    server.stop()


DISTRO_PACKAGE = "opentelemetry-distro"
DISTRO_CONFIGURATOR = "opentelemetry.distro:OpenTelemetryConfigurator"
DISTRO_DISTRO = "opentelemetry.distro:OpenTelemetryDistro"


@pytest.fixture(scope="session")
def distro_path(tmp_path_factory) -> Path:
    """opentelemetry-distro, at the version of the installed opentelemetry-instrumentation, in a directory of its
    own (put on the server's PYTHONPATH by the one scenario that wants it). Not in the test extra: beside ours,
    which configurator `opentelemetry-instrument` chooses depends on the order entry points load, and every
    other zero-code test must keep ours."""
    target = tmp_path_factory.mktemp("opentelemetry-distro")
    version = importlib.metadata.version("opentelemetry-instrumentation")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                           "--target", str(target), f"{DISTRO_PACKAGE}=={version}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip could not install {DISTRO_PACKAGE}=={version}: {done.stderr}"
    return target


def distro_env(path: Path) -> dict[str, str]:
    """Choose opentelemetry-distro's configurator and distro by their entry point names."""
    (dist,) = importlib.metadata.distributions(path=[str(path)])
    names = {(ep.group, ep.value): ep.name for ep in dist.entry_points}
    configurator = names[("opentelemetry_configurator", DISTRO_CONFIGURATOR)]
    distro = names[("opentelemetry_distro", DISTRO_DISTRO)]
    return {"OTEL_PYTHON_CONFIGURATOR": configurator, "OTEL_PYTHON_DISTRO": distro, "PYTHONPATH": str(path)}
