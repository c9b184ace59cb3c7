"""One instrumentor per HTTP client library, switched like every OpenTelemetry instrumentation.

In real processes: under ``opentelemetry-instrument`` and with ``setup()``, ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
naming ours leaves that library unpatched (and its LLM calls unmeasured, and other libraries' numbers for them
kept); otherwise the library is patched when it is imported, and ``uninstrument()`` puts it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.integration.servers import BIN, ROOT

pytestmark = pytest.mark.integration
PROBE = textwrap.dedent("""
    import json, os
    if os.environ.get("PROBE_SETUP"):
        import otel_llm_metrics
        otel_llm_metrics.setup()
    import aiohttp, httpx, httpx2
    from otel_llm_metrics import runtime
    from otel_llm_metrics.client.instrumentors import AiohttpLlmInstrumentor, HttpxLlmInstrumentor
    def patched(owner, name):
        return hasattr(owner.__dict__[name], "__wrapped__")
    state = {"httpx": patched(httpx.Client, "_send_single_request"),
             "httpx2": patched(httpx2.AsyncClient, "_send_single_request"),
             "aiohttp": patched(aiohttp.ClientSession, "_request"),
             "ours": runtime.client_numbers_ours(runtime.current_telemetry().settings)}
    HttpxLlmInstrumentor().uninstrument()
    AiohttpLlmInstrumentor().uninstrument()
    state["after_uninstrument"] = [patched(httpx.Client, "_send_single_request"),
                                   patched(aiohttp.ClientSession, "_request")]
    print(json.dumps(state))
""")


def _probe(disabled: str, zero_code: bool) -> dict:
    command = [sys.executable, "-c", PROBE]
    if zero_code:
        command = [str(BIN / "opentelemetry-instrument"), *command]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, "PYTHONPATH": str(ROOT),
           "OTEL_METRICS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled, **({} if zero_code else {"PROBE_SETUP": "1"})}
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("zero_code", [True, False], ids=["zero-code", "setup"])
def test_each_library_is_patched_when_imported_and_put_back_by_uninstrument(zero_code):
    state = _probe("", zero_code)
    assert state == {"httpx": True, "httpx2": True, "aiohttp": True, "ours": True,
                     "after_uninstrument": [False, False]}


@pytest.mark.parametrize("zero_code", [True, False], ids=["zero-code", "setup"])
def test_disabled_instrumentations_naming_ours_leave_that_library_alone(zero_code):
    state = _probe("otel_llm_metrics_httpx", zero_code)
    assert (state["httpx"], state["httpx2"], state["aiohttp"]) == (False, False, True)
    assert state["ours"] is False, "httpx calls unmeasured: other libraries' numbers for them are not copies"
    state = _probe("otel_llm_metrics_aiohttp, requests", zero_code)
    assert (state["httpx"], state["aiohttp"], state["ours"]) == (True, False, True)
