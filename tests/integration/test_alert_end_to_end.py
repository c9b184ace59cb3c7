"""An upstream failure in the demo fires a real Prometheus alert, delivered by a real Alertmanager.

The rules are the project's own, with windows and `for:` durations shortened (5m -> 15s, for -> 0s)
so that the test takes seconds rather than minutes; expressions and thresholds are unchanged.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.integration.servers import ROOT, Alertmanager, AppServer, Prometheus, wait_for

pytestmark = pytest.mark.integration


def _fast_rules(directory: Path) -> list[Path]:
    written = []
    for name in ("recording.yml", "alerts.yml"):
        text = (ROOT / "prometheus" / "rules" / name).read_text()
        text = re.sub(r"\[(5|10)m\]", "[15s]", text)
        text = re.sub(r"for: \d+m", "for: 0s", text)
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def test_upstream_failure_fires_the_error_ratio_alert_to_a_webhook(tmp_path):
    received: list[dict] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    alertmanager = Alertmanager(
        "route:\n  receiver: test\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n"
        "  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{webhook.server_port}/\n")
    app = AppServer("otel_llm_metrics.demo.app:app", env={"DEMO_FIRST_TOKEN_MS": "2"}).wait_ready()
    prometheus = Prometheus([f"127.0.0.1:{app.metrics_port}"], rules=_fast_rules(tmp_path),
                            alertmanager=alertmanager.address)
    try:
        chat = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
        with httpx.Client(base_url=app.url, timeout=10) as client:
            assert client.post("/admin/fault", params={"fail_rate": 1.0}).json() == {"fail_rate": 1.0}

            def fired() -> bool:
                assert client.post("/v1/chat/completions", json=chat).status_code == 502
                return any(alert["labels"]["alertname"] == "LLMAppHighErrorRatio" and alert["status"] == "firing"
                           for message in received for alert in message["alerts"])
            wait_for(fired, "LLMAppHighErrorRatio delivered to the webhook", deadline_s=90, interval=0.25)
        alert = next(a for m in received for a in m["alerts"] if a["labels"]["alertname"] == "LLMAppHighErrorRatio")
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook"] and "more than 5%" in alert["annotations"]["summary"]
    finally:
        prometheus.stop()
        app.stop()
        alertmanager.stop()
        webhook.shutdown()
