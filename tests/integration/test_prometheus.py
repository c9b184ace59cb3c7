"""A real Prometheus scrapes the demo app served by real uvicorn; PromQL sees exact numbers."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from otel_llm_metrics import catalogue
from tests import local_http
from tests.integration.servers import require_binary, wait_for

pytestmark = pytest.mark.integration
CHAT = {"model": "demo-model", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 8}


def _full_stream(client: httpx.Client) -> tuple[int, int]:
    """(data lines, bytes) the client received for one complete stream."""
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = b"".join(response.iter_raw())
    return raw.count(b"data:"), len(raw)


def _abandoned_stream(client: httpx.Client) -> None:
    body = {**CHAT, "stream": True, "max_tokens": 2000}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and '"content":"' in line:
                break  # leave mid-stream; closing the response closes the connection


def test_exact_counts_outcomes_and_sizes_in_promql(demo_app, prometheus):
    """Other tests share this app: every count is a difference from before this test's traffic."""
    plain, streams, cancelled = 10, 4, 2
    route = 'http_route="/v1/chat/completions"'
    completed = 'http_stream_outcome="completed"'
    queries = {
        "requests": f"sum(http_server_request_duration_seconds_count{{{route}}})",
        "completed": f"sum(http_server_streams_total{{{completed}}})",
        "cancelled": 'sum(http_server_streams_total{http_stream_outcome="client_cancelled"})',
        "chunks": f"sum(http_server_stream_chunks_sum{{{completed}}})",
        "bytes": f"sum(http_server_stream_body_size_bytes_sum{{{completed}}})",
        "ttfb": f"sum(http_server_stream_time_to_first_byte_seconds_count{{{completed}}})",
    }
    before = {name: prometheus.value(query) or 0.0 for name, query in queries.items()}
    received_chunks = received_bytes = 0
    with httpx.Client(base_url=demo_app.url, timeout=30) as client:
        for _ in range(plain):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        for _ in range(streams):
            chunks, size = _full_stream(client)
            received_chunks += chunks
            received_bytes += size
    for _ in range(cancelled):
        with httpx.Client(base_url=demo_app.url, timeout=30) as client:
            _abandoned_stream(client)

    prometheus.wait_value(queries["requests"], before["requests"] + plain + streams + cancelled)
    prometheus.wait_value(queries["completed"], before["completed"] + streams)
    prometheus.wait_value(queries["cancelled"], before["cancelled"] + cancelled)
    prometheus.wait_value("sum(http_server_active_requests)", 0)
    prometheus.wait_value('sum(http_server_route_active_requests{http_route="/v1/chat/completions"})', 0)
    prometheus.wait_value(queries["chunks"], before["chunks"] + received_chunks)
    prometheus.wait_value(queries["bytes"], before["bytes"] + received_bytes)
    prometheus.wait_value(queries["ttfb"], before["ttfb"] + streams)  # another series: the next scrape may have it
    assert prometheus.value('max(http_server_route_active_requests_peak{http_route="/v1/chat/completions"})') >= 1
    assert prometheus.value("sum(concurrency_limiter_wait_time_seconds_count)") >= plain + streams
    assert prometheus.value("count(target_info{service_instance_id!=''})") == 1
    # Plain requests take ~40 ms of simulated upstream: p95 must sit in the low buckets.
    buckets = f"http_server_request_duration_seconds_bucket{{{route}}}"
    p95 = prometheus.value(f"histogram_quantile(0.95, sum by (le) ({buckets}))")
    assert p95 is not None and 0 < p95 < 2.5


def test_every_catalogue_instrument_is_scraped_and_promtool_accepts_the_exposition(demo_app):
    with httpx.Client(base_url=demo_app.url, timeout=30) as client:
        client.post("/v1/chat/completions", json=CHAT)
        _full_stream(client)
    # Not in the demo: the LLM calls an app makes (the demo makes none: test_upstream_calls checks every one
    # on a RAG app's scrape), pools and caches (test_pools checks them), GPU (no GPU on these machines).
    elsewhere = {*catalogue.POOL_SPECS, *catalogue.CACHE_SPECS, *catalogue.GPU_SPECS, *catalogue.CALLS_MADE_SPECS,
                 *catalogue.COST_SPECS,  # cost: the demo's model has no price; checked on the RAG app
                 *catalogue.MCP_SPECS}  # the demo serves no MCP: test_mcp checks every one
    missing: list[str] = []

    def every_name() -> str | None:  # the loop-lag sampler records its first sample 0.5 s after serving began
        nonlocal missing
        text = local_http.get(demo_app.metrics_url, timeout=5).text
        missing = [spec.prometheus_name for spec in catalogue.ALL
                   if f"\n{spec.prometheus_name}" not in text and spec not in elsewhere]
        return None if missing else text
    try:
        text = wait_for(every_name, "every catalogue name in the scrape", deadline_s=10)
    except pytest.fail.Exception:
        raise AssertionError(f"catalogue names not in the scrape: {missing}") from None
    checked = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text.encode(),
                             capture_output=True, timeout=30)
    # Exit 1 is a broken exposition; 3 is lint. The only lint allowed: semantic-convention names whose
    # Prometheus form ends in _count without being a histogram.
    # Other instrumentations' names (opentelemetry-instrumentation-system-metrics, installed beside us as
    # bootstrap does) are theirs to name: only ours are held to this.
    allowed = {"process_thread_count", "process_unix_file_descriptor_count", "db_client_connection_count"}
    ours = {spec.prometheus_name for spec in catalogue.ALL}
    findings = [line for line in (checked.stdout + checked.stderr).decode().splitlines() if line.strip()]
    assert checked.returncode in (0, 3), findings
    assert all('"_count" suffix' in line and (line.split()[0] in allowed or line.split()[0] not in ours)
               for line in findings), findings


def test_health_checks_are_excluded_and_headers_are_returned(demo_app):
    before = local_http.get(demo_app.metrics_url, timeout=5).text.count('http_route="/health"')
    response = local_http.get(demo_app.url + "/v1/models", headers={"x-request-id": "trace-me-1"})
    assert response.headers["x-request-id"] == "trace-me-1"
    assert response.headers["server-timing"].startswith("app;dur=")
    local_http.get(demo_app.url + "/health")
    assert local_http.get(demo_app.metrics_url, timeout=5).text.count('http_route="/health"') == before == 0


def test_cli_summary_and_watch_read_the_live_endpoint(demo_app):
    from otel_llm_metrics.cli import read_metrics, summary
    from tests.integration.servers import BIN

    with httpx.Client(base_url=demo_app.url, timeout=30) as client:
        client.post("/v1/chat/completions", json=CHAT)
        _full_stream(client)
    report = summary(read_metrics(demo_app.metrics_url))
    for expected in ("Requests by route", "POST   /v1/chat/completions", "Streams: ", "LLM requests by model",
                     "Process: ", "Pool sqlite/usage.db", "Cache model-catalog", "Limiter upstream"):
        assert expected in report, expected
    watched = subprocess.run([str(BIN / "otel-llm-metrics"), "watch", demo_app.metrics_url, "--count", "1"],
                             capture_output=True, text=True, timeout=60)
    assert watched.returncode == 0 and "Requests (in flight" in watched.stdout, watched.stdout
    assert "/v1/chat/completions" in watched.stdout and "Models" in watched.stdout
    unreachable = subprocess.run([str(BIN / "otel-llm-metrics"), "summary", "http://127.0.0.1:1/metrics"],
                                 capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "cannot read" in unreachable.stderr
