"""The seeds' JSON view: ``telemetry.snapshot()`` and ``Accept: application/json`` on the endpoint, embedded and
app-port, give the schema of ``otel-llm-metrics snapshot --json``, built by the CLI's one builder."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import AggregationTemporality

from otel_llm_metrics import Registry, Telemetry, load_settings
from otel_llm_metrics.cli import SNAPSHOT_SCHEMA, snapshot
from tests.apps import starlette_app
from tests.asgi_client import call
from tests.integration.servers import free_port

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
ROOT = Path(__file__).resolve().parents[2]


def _traffic(app) -> None:
    """Two matched requests, one unmatched, one that fails, one completed stream."""

    async def requests() -> None:
        for path in ("/items/1", "/items/2", "/nowhere", "/boom", "/stream?n=3"):
            await call(app, "GET", path)

    asyncio.run(requests())


def _timeless(shot: dict) -> dict:
    return {key: value for key, value in shot.items() if key != "time"}


def _routes(shot: dict) -> dict:
    return {(r["method"], r["route"]): r for r in shot["routes"]}


def _check_numbers(shot: dict) -> None:
    assert shot["schema"] == SNAPSHOT_SCHEMA and shot["rates"] is None
    assert shot["totals"]["requests"] == 5 and shot["totals"]["errors"] == 1
    routes = _routes(shot)
    assert routes[("GET", "/items/{item_id}")]["requests"] == 2
    assert routes[("GET", "/items/{item_id}")]["duration_s"]["count"] == 2
    assert routes[("GET", "(unmatched)")]["requests"] == 1
    assert routes[("GET", "/boom")]["errors"] == 1
    assert shot["streams"]["outcomes"] == {"completed": 1}
    assert shot["in_flight"] == 0 and shot["peak"] == 1


def test_snapshot_without_an_endpoint_reads_memory_once_and_leaves_the_push_readers_their_deltas(make_telemetry):
    """OTLP only (no Prometheus reader): the numbers, LLM tokens included, from a collection of our own."""
    from tests.llm.test_transcripts import HERE
    from tests.llm.test_transcripts_served import _replaying_app

    telemetry = make_telemetry({Histogram: AggregationTemporality.DELTA}, resources=("none",),
                               cost=False)  # the price table loads in the background: not in this test
    assert telemetry.endpoint is None
    _traffic(telemetry.instrument(starlette_app()))
    llm = telemetry.instrument(_replaying_app((HERE / "openai_chat_stream_usage.sse").read_bytes(),
                                              "text/event-stream"))
    asyncio.run(call(llm, "POST", "/v1/chat/completions", body=b'{"model":"m","stream":true}'))

    shot = telemetry.snapshot()
    assert shot["totals"]["requests"] == 6 and shot["totals"]["errors"] == 1
    assert _routes(shot)[("GET", "/items/{item_id}")]["requests"] == 2
    assert shot["streams"]["outcomes"] == {"completed": 2}
    assert shot["totals"]["input_tokens"] == 9 and shot["totals"]["output_tokens"] == 3
    assert [(m["model"], m["requests"], m["input_tokens"]) for m in shot["models"]] == [("m", 1, 9)]
    assert json.loads(json.dumps(shot)) == shot, "plain JSON types only"
    assert _timeless(telemetry.snapshot()) == _timeless(shot), "reading again changes nothing"
    # The push reader (delta) still gets its six requests: the snapshot did not take them from it.
    assert telemetry.collect().total_count("http.server.request.duration") == 6


def test_app_port_json_is_the_snapshot_and_the_cli_builds_the_same_from_the_text_page(make_telemetry, tmp_path):
    telemetry = make_telemetry(app_metrics_path="/metrics", workers_dir=str(tmp_path), resources=("none",))
    app = telemetry.instrument(starlette_app())
    _traffic(app)

    async def page(accept: bytes | None):
        return await call(app, "GET", "/metrics", headers=[(b"accept", accept)] if accept else ())

    answer = asyncio.run(page(b"application/json"))
    assert answer.status == 200 and answer.header(b"content-type") == b"application/json"
    served = json.loads(answer.body)
    _check_numbers(served)  # the JSON request itself is left out: 5 requests, none in flight
    assert _timeless(served) == _timeless(telemetry.snapshot())
    text = asyncio.run(page(None))
    assert text.header(b"content-type").startswith(b"text/plain")
    assert _timeless(snapshot(text.body.decode())) == _timeless(served), "the CLI's builder, the same dict"
    for accept, expected in ((b"text/html,application/xhtml+xml,*/*;q=0.8", b"text/plain"),
                             (PROMETHEUS_ACCEPT.encode(), b"application/openmetrics-text"),
                             (b"application/openmetrics-text, application/json", b"application/openmetrics-text"),
                             (b"application/json; charset=utf-8", b"application/json")):
        assert asyncio.run(page(accept)).header(b"content-type").startswith(expected), accept
    head = asyncio.run(call(app, "HEAD", "/metrics", headers=[(b"accept", b"application/json")]))
    assert head.status == 200 and head.body == b"" and head.header(b"content-type") == b"application/json"


def test_the_embedded_endpoint_answers_json_and_keeps_prometheus_negotiation(tmp_path):
    port = free_port()
    settings = load_settings({}, metrics_exporters="prometheus", resources="none", prometheus_port=port,
                             workers_dir=str(tmp_path))
    telemetry = Telemetry(settings, Registry())
    try:
        _traffic(telemetry.instrument(starlette_app()))
        assert telemetry.prometheus_port == port

        def get(accept: str | None) -> tuple[str, bytes]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                             headers={"Accept": accept} if accept else {})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.headers["Content-Type"], response.read()

        content_type, body = get("application/json")
        assert content_type == "application/json"
        served = json.loads(body)
        _check_numbers(served)
        assert _timeless(served) == _timeless(telemetry.snapshot())
        content_type, body = get(None)
        assert content_type.startswith("text/plain")
        assert _timeless(snapshot(body.decode())) == _timeless(served)
        assert get(PROMETHEUS_ACCEPT)[0].startswith("application/openmetrics-text")
    finally:
        telemetry.shutdown()


def test_snapshot_needs_no_cli_extra():
    """Without rich and matplotlib (the ``cli`` extra) importable, snapshot() still works."""
    script = """
import asyncio, sys
sys.modules.update(rich=None, matplotlib=None)  # importing either now raises ImportError
from otel_llm_metrics import Registry, Telemetry, load_settings
from tests.apps import starlette_app
from tests.asgi_client import call
telemetry = Telemetry(load_settings({}, metrics_exporters="none", resources="none"), Registry())
asyncio.run(call(telemetry.instrument(starlette_app()), "GET", "/items/1"))
print(telemetry.snapshot()["totals"]["requests"])
telemetry.shutdown()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0"
