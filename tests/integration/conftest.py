from __future__ import annotations

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
