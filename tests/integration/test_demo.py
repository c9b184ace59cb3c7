"""`make demo` as a person runs it: it says where metrics are, and stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.servers import ROOT, free_port

pytestmark = pytest.mark.integration


def _run_demo_until_serving() -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "DEMO_PORT": str(free_port()), "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port())}
    demo = subprocess.Popen([sys.executable, "-m", "otel_llm_metrics.demo"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # readline returns as lines come; the deadline bounds a hung demo
        line = demo.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        lines.append(line)
        if "Ctrl-C to stop" in line:
            return demo, lines
    demo.kill()
    pytest.fail("the demo never said it was serving:\n" + "".join(lines))


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_demo_says_where_metrics_are_and_stops_cleanly(how):
    demo, lines = _run_demo_until_serving()
    if how == "ctrl-c":
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
    else:
        demo.send_signal(signal.SIGTERM)
    rest, _ = demo.communicate(timeout=60)
    output = "".join(lines) + rest
    assert demo.returncode == 0, output
    assert "Traceback" not in output and "CancelledError" not in output, output
    assert "Application shutdown complete" in output, output
    assert "otel_llm_metrics: metrics on http://127.0.0.1:" in output, "the serving process says where"
