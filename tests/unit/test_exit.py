"""A process that simply ends (no server, no lifespan) pushes its last numbers from the atexit flush.

Python 3.12.1 forbids starting a thread in an atexit callback, which once made that flush raise
instead of push; the unit sessions run this on every interpreter present.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_script_that_simply_ends_pushes_its_last_numbers():
    script = ("import otel_llm_metrics\n"
              "telemetry = otel_llm_metrics.setup()\n"
              "print('set up', flush=True)\n")
    env = {**os.environ, "OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "300000",
           "OTEL_SERVICE_NAME": "exit-test"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    _, _, pushed = done.stdout.partition("set up")
    assert '"service.name": "exit-test"' in pushed and '"name": "process.cpu.time"' in pushed, done.stdout[-2000:]
