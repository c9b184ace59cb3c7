"""Zero code honours OTEL_LOGS_EXPORTER as the SDK's own configurator does (issue 19: 0 of 20 records were
exported), with the resource of our metrics and spans, and a record made inside a span carries its ids."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
SCRIPT = """
import logging
from opentelemetry import trace
import otel_llm_metrics
telemetry = otel_llm_metrics.current_telemetry()
with trace.get_tracer("app").start_as_current_span("work") as span:
    print("SPAN", format(span.get_span_context().trace_id, "032x"), flush=True)
    logging.getLogger("app").warning("served one")
print("INSTANCE", telemetry.resource().attributes["service.instance.id"], flush=True)
"""


def test_logs_are_exported_when_asked_with_the_trace_id_and_our_resource():
    env = {**os.environ, "OTEL_LOGS_EXPORTER": "console", "OTEL_TRACES_EXPORTER": "console",
           "OTEL_METRICS_EXPORTER": "none", "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
           "OTEL_SERVICE_NAME": "logs-test", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    done = subprocess.run([str(INSTRUMENT), sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    trace_id = re.search(r"^SPAN (\w{32})$", done.stdout, re.M).group(1)
    instance = re.search(r"^INSTANCE (\S+)$", done.stdout, re.M).group(1)
    records = [json.loads(block) for block in _json_blocks(done.stdout) if '"body"' in block]
    (record,) = [r for r in records if r["body"] == "served one"]
    assert record["trace_id"] == "0x" + trace_id, record
    assert record["resource"]["attributes"]["service.instance.id"] == instance, "one resource per process"
    assert record["resource"]["attributes"]["service.name"] == "logs-test"


def test_without_otel_logs_exporter_logging_is_left_as_the_sdk_leaves_it():
    """The SDK's configuration sets a LoggerProvider that sends nowhere and adds no handler to logging."""
    script = ("import logging, otel_llm_metrics\nfrom opentelemetry._logs import get_logger_provider\n"
              "print(type(get_logger_provider()).__name__)\n"
              "print(sorted(type(h).__name__ for h in logging.getLogger().handlers))\n")
    unset = ("OTEL_LOGS_EXPORTER", "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(OTEL_METRICS_EXPORTER="none")
    done = subprocess.run([str(INSTRUMENT), sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["LoggerProvider", "[]"], done.stdout + done.stderr


def _json_blocks(text: str) -> list[str]:
    """The top-level JSON objects the console exporters print, one after another."""
    blocks, depth, start = [], 0, None
    for index, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                blocks.append(text[start:index + 1])
    return blocks
