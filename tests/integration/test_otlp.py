"""A real OTLP receiver (rotel) gets the same instruments over gRPC and HTTP; a dead one harms nothing."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.integration.servers import AppServer, Rotel, free_port, wait_for

pytestmark = pytest.mark.integration
CHAT = {"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _metric_blocks(log: str, name: str) -> list[str]:
    return [block for block in re.split(r"\n(?=Metric #)", log) if f"-> Name: {name}\n" in block]


@pytest.fixture
def rotel():
    server = Rotel()
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_metrics_and_spans_arrive_over_otlp(rotel, protocol):
    app = AppServer("otel_llm_metrics.demo.app:app", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint(protocol), "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "otlp-test"})
    try:
        app.wait_ready()
        with httpx.Client(base_url=app.url, timeout=30) as client:
            for _ in range(3):
                client.post("/v1/chat/completions", json=CHAT)
            with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
                chunks = sum(1 for line in response.iter_lines() if line.startswith("data:"))

        def arrived() -> bool:
            log = rotel.log()
            durations = _metric_blocks(log, "http.server.request.duration")
            streams = _metric_blocks(log, "http.server.stream.chunks")
            others = ("http.server.active_requests", "http.server.streams", "concurrency_limiter.wait_time")
            return (any("Str(/v1/chat/completions)" in b and "Count: 4\n" in b for b in durations)
                    and any(f"Sum: {chunks}\n" in b for b in streams)
                    and all(_metric_blocks(log, name) for name in others))
        wait_for(arrived, f"4 requests, a {chunks}-chunk stream and the other instruments at rotel over {protocol}")
        log = rotel.log()
        assert "service.name: Str(otlp-test)" in log
        wait_for(lambda: "http.stream.end" in rotel.log(), "the stream's span with its end event")
        spans = re.findall(r"Name\s+: (.+)", rotel.log())
        assert spans.count("POST /v1/chat/completions") == 4, spans
        assert len(spans) == 4, f"one span per request, none per chunk: {spans}"
        # Exemplars: latency points link to the traces of the requests they measured.
        log = rotel.log()
        assert "gen_ai.response.finish_reasons: Slice(Str(length))" in log
        assert "gen_ai.usage.output_tokens: Int(5)" in log
        span_traces = set(re.findall(r"Trace ID\s+: ([0-9a-f]{32})", log))
        for name in ("http.server.request.duration", "gen_ai.server.time_to_first_token"):
            linked = {t for block in _metric_blocks(log, name)
                      for t in re.findall(r"Exemplar #\d+\n\s+-> Trace ID: ([0-9a-f]{32})", block)}
            assert linked and linked <= span_traces, name
    finally:
        app.stop()


def test_dead_collector_never_blocks_requests_or_shutdown():
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = AppServer("otel_llm_metrics.demo.app:app", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": dead, "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_LLM_METRICS_SHUTDOWN_TIMEOUT": "2"})
    app.wait_ready()
    slowest = 0.0
    with httpx.Client(base_url=app.url, timeout=30) as client:
        for _ in range(20):
            started = time.monotonic()
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
    # Each request takes ~30 ms of simulated upstream; export retries run on their own thread.
    assert slowest < 2.0, f"a request waited {slowest:.2f}s while the collector was down"
    started = time.monotonic()
    code = app.stop(timeout=20)
    assert time.monotonic() - started < 10, app.log()
    assert code == 0, app.log()
