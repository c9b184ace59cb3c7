"""The CLI's reading of a real exposition, made in-process by our own Prometheus reader."""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from otel_llm_metrics import Registry, Telemetry, load_settings
from otel_llm_metrics.cli import HistogramData, main, parse, summary
from tests.apps import starlette_app
from tests.asgi_client import call
from tests.integration.servers import free_port


@contextlib.contextmanager
def _serving() -> Iterator[tuple[Telemetry, str]]:
    """An instrumented app after four requests, and the URL of its metrics endpoint (a free port)."""
    port = free_port()
    settings = load_settings({}, metrics_exporters="prometheus", resources="none", prometheus_port=port)
    telemetry = Telemetry(settings, Registry())
    app = telemetry.instrument(starlette_app())

    async def traffic() -> None:
        for path in ("/items/1", "/items/2", "/nowhere", "/stream?n=5"):
            await call(app, "GET", path)

    asyncio.run(traffic())
    try:
        yield telemetry, f"http://127.0.0.1:{port}/metrics"
    finally:
        telemetry.shutdown()


def _exposition() -> str:
    with _serving() as (telemetry, _):
        return telemetry.exposition()[0].decode()


def test_summary_counts_requests_per_route_and_names_the_unmatched_ones():
    report = summary(_exposition())
    lines = report.splitlines()
    assert any("/items/{item_id}" in line and " 2  p50" in line for line in lines), report
    assert any("(unmatched)" in line and " 1  p50" in line for line in lines), report
    assert "Streams: completed 1" in report
    assert "5 chunks" in report


def test_parse_keeps_histograms_by_label_set_without_scope_labels():
    _, histograms = parse(_exposition())
    series = histograms["http_server_request_duration_seconds"]
    assert sum(data.count for data in series.values()) == 4
    assert not any(k.startswith("otel_scope_") for key in series for k, _ in key)


def test_quantile_interpolates_inside_the_bucket_like_prometheus():
    data = HistogramData(buckets={0.1: 0.0, 0.2: 10.0, math.inf: 10.0}, count=10.0)
    assert math.isclose(data.quantile(0.5), 0.15)
    assert math.isnan(HistogramData().quantile(0.5))


def test_a_percentile_in_a_wide_bucket_gives_the_bucket_not_a_made_up_value():
    """Four values of ~105 ms in the (0.1, 0.25] bucket used to print as 175/242 ms."""
    wide = HistogramData(buckets={0.1: 0.0, 0.25: 4.0, math.inf: 4.0}, count=4.0, total=0.42)
    assert wide.describe(0.5) == "100-250 ms" and wide.describe(0.95) == "100-250 ms"
    assert round(wide.mean, 3) == 0.105
    narrow = HistogramData(buckets={0.04: 0.0, 0.06: 10.0, math.inf: 10.0}, count=10.0, total=0.5)
    assert narrow.describe(0.5) == "50 ms", "interpolated where the bucket is narrow"
    assert HistogramData(buckets={0.01: 4.0, math.inf: 4.0}, count=4.0).describe(0.5) == "<=10 ms"
    assert HistogramData(buckets={1.0: 0.0, math.inf: 2.0}, count=2.0).describe(0.5) == ">1000 ms"
    assert HistogramData().describe(0.5) == "-"


def test_unknown_input_tokens_print_as_a_dash_not_zero():
    from tests.llm.test_transcripts import HERE
    from tests.llm.test_transcripts_served import _replaying_app

    settings = load_settings({}, metrics_exporters="prometheus", resources="none", prometheus_port=free_port())
    telemetry = Telemetry(settings, Registry())
    body = (HERE / "openai_chat_stream_no_usage.sse").read_bytes()  # output deltas, no usage at all
    app = telemetry.instrument(_replaying_app(body, "text/event-stream"))
    asyncio.run(call(app, "POST", "/v1/chat/completions", body=b'{"model":"m","stream":true}'))
    try:
        line = next(line for line in summary(telemetry.exposition()[0].decode()).splitlines()
                    if line.strip().startswith("chat"))
    finally:
        telemetry.shutdown()
    assert "in      -" in line and "out      3 (3 estimated)" in line, line


def test_two_expositions_merge_into_one_report():
    text = _exposition()
    merged = summary([text, text])
    assert any("/items/{item_id}" in line and " 4  p50" in line for line in merged.splitlines()), merged


def test_summary_reads_several_urls_and_a_closed_pipe_is_not_a_read_error(capsys):
    with _serving() as (_, url):
        assert main(["summary", url, url]) == 0
        assert "/items/{item_id}                    4" in capsys.readouterr().out
        cli = Path(sys.executable).parent / "otel-llm-metrics"
        piped = subprocess.run(["bash", "-c", f'"{cli}" summary {url} | head -c 0; exit "${{PIPESTATUS[0]}}"'],
                               capture_output=True, text=True, timeout=60)
        assert piped.returncode == 0 and piped.stderr == "", piped.stderr


def test_watch_keeps_retrying_an_endpoint_that_does_not_answer(capsys):
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    assert main(["watch", dead, "--count", "2", "--interval", "0.01"]) == 0
    screens = capsys.readouterr().out
    assert f"cannot read {dead}" in screens and "retrying every 0.01s" in screens  # the last screen


def test_snapshot_models_say_null_for_what_was_not_reported():
    from otel_llm_metrics.cli import snapshot
    from tests.llm.test_transcripts import HERE
    from tests.llm.test_transcripts_served import _replaying_app

    settings = load_settings({}, metrics_exporters="prometheus", resources="none", prometheus_port=free_port())
    telemetry = Telemetry(settings, Registry())
    for name in ("openai_chat_stream_no_usage.sse", "openai_chat_stream_usage.sse"):
        app = telemetry.instrument(_replaying_app((HERE / name).read_bytes(), "text/event-stream"))
        model = name.split(".")[0]
        asyncio.run(call(app, "POST", "/v1/chat/completions", body=f'{{"model":"{model}","stream":true}}'.encode()))
    try:
        shot = snapshot(telemetry.exposition()[0].decode(), now=1000.0)
    finally:
        telemetry.shutdown()
    models = {m["model"]: m for m in shot["models"]}
    assert models["openai_chat_stream_no_usage"]["input_tokens"] is None, "unknown, not 0"
    assert models["openai_chat_stream_no_usage"]["output_tokens"] == 3
    assert models["openai_chat_stream_no_usage"]["estimated_output_tokens"] == 3
    assert models["openai_chat_stream_usage"]["input_tokens"] == 9
    assert models["openai_chat_stream_usage"]["estimated_output_tokens"] == 0
    assert shot["totals"]["input_tokens"] == 9 and shot["totals"]["output_tokens"] == 6
    assert models["openai_chat_stream_usage"]["time_to_first_token_s"]["count"] == 1
