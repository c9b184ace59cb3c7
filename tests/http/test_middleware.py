"""The middleware on real Starlette/FastAPI apps, driven through the ASGI protocol in-process."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from otel_llm_metrics.http.middleware import MetricsMiddleware
from tests.apps import AppError, fastapi_app, starlette_app
from tests.asgi_client import call

DURATION = "http.server.request.duration"



def test_plain_request_records_route_template_status_and_sizes(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    result = run(call(app, "GET", "/items/42"))
    assert result.status == 200 and result.body == b'{"item":"42"}'
    posted = run(call(app, "POST", "/echo", body=b"x" * 1000))
    assert posted.body == b"1000"

    view = telemetry.collect()
    point = view.one(DURATION, http__route="/items/{item_id}")
    assert point.count == 1
    assert dict(point.attributes) == {"http.request.method": "GET", "url.scheme": "http",
                                      "http.route": "/items/{item_id}", "http.response.status_code": 200}
    assert view.one("http.server.response.body.size", http__route="/items/{item_id}").sum == len(result.body)
    assert view.one("http.server.request.body.size", http__route="/echo").sum == 1000
    assert view.one("http.server.active_requests", http__request__method="GET").value == 0
    assert view.one("http.server.active_requests.peak").value == 1
    assert not view.points("http.server.stream.duration"), "a one-message response is not a stream"


def test_request_id_and_server_timing_headers(run, make_telemetry):
    app = make_telemetry().instrument(starlette_app())
    plain = run(call(app, "GET", "/items/1"))
    assert plain.header(b"x-request-id")
    assert plain.header(b"server-timing").startswith(b"app;dur=")
    honoured = run(call(app, "GET", "/items/1", headers=[(b"x-request-id", b"abc-123")]))
    assert honoured.header(b"x-request-id") == b"abc-123"
    streamed = run(call(app, "GET", "/stream?n=3"))
    assert streamed.header(b"server-timing") is None, "no Server-Timing on streams: headers precede the work"
    assert streamed.header(b"x-request-id")


@pytest.mark.parametrize("bad", [b"a b", b"x\r\nInjected: 1", b"\xff\xfe", b"r" * 10_000, b""])
def test_malformed_or_huge_request_id_is_replaced(run, make_telemetry, bad):
    app = make_telemetry().instrument(starlette_app())
    result = run(call(app, "GET", "/items/1", headers=[(b"x-request-id", bad)]))
    returned = result.header(b"x-request-id")
    assert result.status == 200
    assert returned and returned != bad and len(returned) <= 128
    assert all(32 < byte < 127 for byte in returned)


def test_unmatched_paths_share_one_series_and_never_leak_the_raw_path(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    for i in range(5):
        assert run(call(app, "GET", f"/no/such/{i}")).status == 404
    points = telemetry.collect().points(DURATION)
    assert len(points) == 1 and points[0].count == 5
    assert "http.route" not in points[0].attributes


def test_mounted_routes_keep_the_mount_prefix(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    assert run(call(app, "GET", "/api/items/7")).status == 200
    assert telemetry.collect().one(DURATION).attributes["http.route"] == "/api/items/{item_id}"


def test_hundred_chunk_stream_is_measured_to_the_last_byte(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    result = run(call(app, "GET", "/stream?n=100&delay=0.002"))
    assert len(result.chunks) == 100

    view = telemetry.collect()
    attrs = {"http__route": "/stream", "http__stream__outcome": "completed"}
    assert view.one("http.server.stream.chunks", **attrs).sum == 100
    assert view.one("http.server.stream.body.size", **attrs).sum == len(result.body)
    assert view.one("http.server.response.body.size").sum == len(result.body)
    assert view.one("http.server.streams", **attrs).value == 1
    ttfb = view.one("http.server.stream.time_to_first_byte", **attrs).sum
    stream_duration = view.one("http.server.stream.duration", **attrs).sum
    request_duration = view.one(DURATION).sum
    # 100 sleeps of 2 ms: the duration covers the whole stream, not just the headers.
    assert request_duration >= 0.2 and stream_duration >= 0.2
    assert 0 < ttfb < stream_duration


def test_client_that_leaves_mid_stream_is_counted_once_as_cancelled(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    result = run(call(app, "GET", "/stream?n=1000&delay=0.001", disconnect_after_chunks=3))
    assert result.raised is None and len(result.chunks) == 3

    view = telemetry.collect()
    assert view.total_count(DURATION) == 1
    assert view.one("http.server.streams").attributes["http.stream.outcome"] == "client_cancelled"
    assert view.one("http.server.streams").value == 1
    assert view.one("http.server.active_requests").value == 0
    assert view.one("http.server.route.active_requests").value == 0


def test_app_raising_before_headers_is_a_500_and_the_exception_reaches_the_server(run, make_telemetry):
    telemetry = make_telemetry()
    inner = starlette_app()
    app = telemetry.instrument(inner)
    result = run(call(app, "GET", "/boom"))
    assert isinstance(result.raised, AppError), "the app's own exception, unchanged"
    point = telemetry.collect().one(DURATION)
    assert point.count == 1
    assert point.attributes["http.response.status_code"] == 500
    assert point.attributes["error.type"] == "tests.apps.AppError"


def test_client_that_leaves_before_any_answer_has_an_error_type_and_no_status_code(run, make_telemetry):
    """The HTTP conventions set http.response.status_code only when one was sent."""
    from starlette.requests import ClientDisconnect

    telemetry = make_telemetry()

    async def waits_for_the_client(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass
        raise ClientDisconnect()

    async def scenario():
        async def receive():
            return {"type": "http.disconnect"}

        async def send(message):
            raise AssertionError("nothing is sent")

        app = MetricsMiddleware(waits_for_the_client, telemetry)
        with pytest.raises(ClientDisconnect):
            await app({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}, receive, send)

    run(scenario())
    point = telemetry.collect().one(DURATION)
    assert point.attributes["error.type"] == "starlette.requests.ClientDisconnect"
    assert "http.response.status_code" not in point.attributes


@pytest.mark.parametrize(("breaks", "method", "path"), [
    ("endpoint_for", "POST", "/v1/chat/completions"), ("LlmExchange", "POST", "/v1/chat/completions"),
    ("new_request_id", "GET", "/stream?n=5"), ("_recording_span", "GET", "/stream?n=5"),
    ("new_active", "GET", "/items/1")])
def test_a_recorder_that_fails_while_starting_never_reaches_the_app_and_leaves_no_gauge_behind(
        run, make_telemetry, monkeypatch, caplog, breaks, method, path):
    import otel_llm_metrics.http.middleware as middleware
    from otel_llm_metrics.http.stats import HttpStats

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    if breaks == "new_request_id":
        monkeypatch.setattr(middleware.request_id, breaks, broken)
    elif breaks == "new_active":
        monkeypatch.setattr(HttpStats, breaks, broken)
    else:
        monkeypatch.setattr(middleware, breaks, broken)
    telemetry = make_telemetry(traces_exporter="console" if breaks == "_recording_span" else "none")
    app = telemetry.instrument(starlette_app())
    result = run(call(app, method, path))
    assert result.raised is None and result.status in (200, 404), "the app answered as if nothing happened"
    stats = telemetry.registry.http
    assert stats.in_flight == 0
    assert all(g.active == 0 for g in (*stats.active.values(), *stats.route_active.values()))
    assert [r for r in caplog.records if "could not record" in r.getMessage()], "the failure is logged"


@pytest.mark.parametrize(("query", "outcome", "error"), [
    ("fail_after=3", "error", "tests.apps.AppError"),
    ("timeout_after=2", "timeout", "TimeoutError"),
])
def test_stream_failing_after_headers(run, make_telemetry, query, outcome, error):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    result = run(call(app, "GET", f"/stream?n=10&{query}"))
    assert result.status == 200 and result.raised is not None
    view = telemetry.collect()
    assert view.one("http.server.streams").attributes["http.stream.outcome"] == outcome
    point = view.one(DURATION)
    assert point.count == 1
    assert point.attributes["error.type"] == error
    assert point.attributes["http.response.status_code"] == 200


def test_websocket_and_lifespan_scopes_pass_through_unmeasured(run, make_telemetry):
    telemetry = make_telemetry()
    seen = []

    async def bare(scope, receive, send):
        seen.append(scope["type"])
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})

    app = MetricsMiddleware(bare, telemetry)

    async def scenario():
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive():
            return next(messages)

        sent = []

        async def send(message):
            sent.append(message)

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        await app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
        return sent

    assert run(scenario()) == [{"type": "lifespan.startup.complete"}], "what the app sent, nothing added"
    assert seen == ["lifespan", "websocket"]
    view = telemetry.collect()
    assert not view.points(DURATION)
    assert telemetry.serving, "the lifespan scope starts the process's endpoint"


def test_non_utf8_path_is_served_and_counted(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    result = run(call(app, "GET", "/caf\udce9/x"))
    assert result.status == 404 and result.raised is None
    assert telemetry.collect().total_count(DURATION) == 1


def test_excluded_routes_exact_and_prefix(run, make_telemetry):
    telemetry = make_telemetry(excluded_routes=("/health", "/internal/*"))
    app = telemetry.instrument(starlette_app())
    for path in ("/health", "/internal/x", "/items/1"):
        assert run(call(app, "GET", path)).status == 200
    points = telemetry.collect().points(DURATION)
    assert [p.attributes["http.route"] for p in points] == ["/items/{item_id}"]


def test_wrapping_twice_counts_once(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(telemetry.instrument(starlette_app()))
    run(call(app, "GET", "/items/3"))
    assert telemetry.collect().total_count(DURATION) == 1


def test_slow_request_is_logged_with_its_ids(run, make_telemetry, caplog):
    telemetry = make_telemetry(slow_request_seconds=0.6)  # wide margins: a loaded machine delays every request
    app = telemetry.instrument(starlette_app())
    caplog.set_level(logging.WARNING, logger="otel_llm_metrics.slow")
    run(call(app, "GET", "/items/1", headers=[(b"x-request-id", b"req-42")]))
    assert not caplog.records, "a fast request is not slow"
    run(call(app, "GET", "/stream?n=4&delay=0.2", headers=[(b"x-request-id", b"req-43")]))
    assert not caplog.records, "streams are judged by time to first byte (about 0.2 s), not their 0.8 s"
    run(call(app, "GET", "/stream?n=1&delay=0.7", headers=[(b"x-request-id", b"req-44")]))
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    for part in ("GET", "/stream", "status=200", "request_id=req-44", "trace_id="):
        assert part in message


def test_series_count_is_capped_with_an_overflow_series(run, make_telemetry):
    telemetry = make_telemetry(max_series=3)
    app = telemetry.instrument(starlette_app())
    methods = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW", "SPAM"]
    for method in methods:
        run(call(app, method, "/items/1"))
    points = telemetry.collect().points(DURATION)
    assert len(points) == 4
    assert sum(p.count for p in points) == len(methods), "overflow keeps the count"
    assert [p for p in points if p.attributes.get("otel.metric.overflow") is True]
    assert {p.attributes.get("http.request.method") for p in points} <= {"GET", "PUT", "DELETE", None}


def test_unknown_methods_collapse_to_other(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    for method in ("BREW", "SPAM", "X" * 500):
        run(call(app, method, "/items/1"))
    (point,) = telemetry.collect().points(DURATION)
    assert point.attributes["http.request.method"] == "_OTHER" and point.count == 3


def test_fastapi_routes_and_streams(run, make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(fastapi_app())
    assert run(call(app, "GET", "/items/5")).status == 200
    assert run(call(app, "GET", "/items/notanint")).status == 422
    assert len(run(call(app, "GET", "/stream?n=7")).chunks) == 7
    view = telemetry.collect()
    assert view.one(DURATION, http__response__status_code=200, http__route="/items/{item_id}").count == 1
    assert view.one(DURATION, http__response__status_code=422).attributes["http.route"] == "/items/{item_id}"
    assert view.one("http.server.stream.chunks").sum == 7


def test_durations_end_at_the_final_body_message_even_when_the_app_keeps_running(run, make_telemetry):
    """Starlette's StreamingResponse returns several ms after its last byte; an app may linger longer."""
    telemetry = make_telemetry()
    lingers = 0.5

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(3):
            await send({"type": "http.response.body", "more_body": True,
                        "body": b'data: {"model":"m","choices":[{"delta":{"content":"t%d"}}]}\n\n' % i})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        await anyio.sleep(lingers)  # cleanup, logging, a background write: not part of the response

    instrumented = MetricsMiddleware(app, telemetry)
    wall = time.perf_counter()
    result = run(call(instrumented, "POST", "/v1/chat/completions", body=b'{"model":"m"}'))
    returned_after = time.perf_counter() - wall
    assert result.raised is None and returned_after >= lingers
    view = telemetry.collect()
    for name in (DURATION, "http.server.stream.duration", "gen_ai.server.request.duration"):
        point = view.points(name)[0]
        assert point.count == 1 and point.sum < lingers, f"{name} {point.sum:.3f}s includes the app's lingering"


def test_span_names_are_the_route_or_the_method_alone_never_the_raw_path(run, make_telemetry):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    telemetry = make_telemetry(traces_exporter="console")
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app = telemetry.instrument(starlette_app())
    run(call(app, "GET", "/items/7"))
    run(call(app, "GET", "/x/evil\r\ninjected: yes/4711"))  # unmatched, with a decoded CR/LF in it
    run(call(app, "BREW", "/items/7"))
    names = sorted(span.name for span in spans.get_finished_spans())
    assert names == ["GET", "GET /items/{item_id}", "HTTP /items/{item_id}"], names


def test_the_app_port_metrics_page_is_built_off_the_loop_under_either_async_library(run, make_telemetry, tmp_path):
    telemetry = make_telemetry(app_metrics_path="/metrics", workers_dir=str(tmp_path))
    app = telemetry.instrument(starlette_app())
    assert run(call(app, "GET", "/items/1")).status == 200
    page = run(call(app, "GET", "/metrics"))
    assert page.status == 200 and page.header(b"content-type").startswith(b"text/plain")
    counted = [line for line in page.body.decode().splitlines()
               if line.startswith("http_server_request_duration_seconds_count{")]
    assert len(counted) == 1 and 'http_route="/items/{item_id}"' in counted[0] and counted[0].endswith(" 1.0")
    head = run(call(app, "HEAD", "/metrics"))
    assert head.status == 200 and head.body == b""
    assert run(call(app, "POST", "/metrics")).status == 405
