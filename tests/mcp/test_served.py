"""The served side in-process: MCP exchanges through the middleware, their bytes split anywhere, on any path."""

from __future__ import annotations

import json
from time import perf_counter

import anyio
import pytest

from tests.apps import starlette_app

OPERATION, SESSION = "mcp.server.operation.duration", "mcp.server.session.duration"
SESSION_ID = b"0123456789abcdef"


def _sse(*messages: dict) -> bytes:
    return b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n" for m in messages)


def mcp_app(answer: str = "sse", tool_error: bool = False, code: int | None = None, cut: int | None = None):
    """A hand-written MCP server: answers each request as SSE (a progress notification first) or as JSON, in two
    body messages cut at ``cut``; acknowledges notifications with 202; a DELETE ends the session."""
    async def app(scope, receive, send):
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["method"] == "DELETE":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        request = json.loads(b"".join(chunks))
        headers = [(b"mcp-session-id", SESSION_ID)]
        if "id" not in request:
            await send({"type": "http.response.start", "status": 202, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        result = {"protocolVersion": "2025-06-18"} if request["method"] == "initialize" else \
            {"content": [{"type": "text", "text": "ok"}], "isError": tool_error}
        response = {"jsonrpc": "2.0", "id": request["id"], "result": result}
        if code is not None:
            response = {"jsonrpc": "2.0", "id": request["id"], "error": {"code": code, "message": "no"}}
        if answer == "sse":
            body = _sse({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}, response)
            kind = b"text/event-stream"
        else:
            body, kind = json.dumps(response).encode(), b"application/json"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind), *headers]})
        at = len(body) // 2 if cut is None else cut
        await send({"type": "http.response.body", "body": body[:at], "more_body": True})
        await send({"type": "http.response.body", "body": body[at:], "more_body": answer == "sse"})
        if answer == "sse":
            await send({"type": "http.response.body", "body": b""})
    return app


async def post(app, body: bytes, cut: int | None = None, method: str = "POST", path: str = "/anywhere/rpc",
               headers: list | None = None) -> bytes:
    """One request with its body in two messages cut at ``cut``; returns the response body as sent."""
    pieces = [body] if cut is None else [body[:cut], body[cut:]]
    received = []

    async def receive():
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await anyio.sleep_forever()

    async def send(message):
        if message["type"] == "http.response.body":
            received.append(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": headers or [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 2)}
    await app(scope, receive, send)
    return b"".join(received)


CALL = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                   "params": {"name": "search", "arguments": {"q": "x"}}}).encode()


@pytest.mark.parametrize("answer", ["sse", "json"])
def test_a_tool_call_split_at_every_byte_is_one_operation_with_its_outcome(make_telemetry, answer):
    telemetry = make_telemetry()
    bare_response = anyio.run(post, mcp_app(answer, tool_error=True), CALL)
    sent = 0
    for cut in range(1, len(CALL)):  # the request cut anywhere
        app = telemetry.instrument(mcp_app(answer, tool_error=True))
        assert anyio.run(post, app, CALL, cut) == bare_response
        sent += 1
    for cut in range(len(bare_response) + 1):  # the answer cut anywhere
        app = telemetry.instrument(mcp_app(answer, tool_error=True, cut=cut))
        assert anyio.run(post, app, CALL) == bare_response
        sent += 1
    point = telemetry.collect().one(OPERATION, gen_ai__tool__name="search")
    assert point.count == sent
    assert dict(point.attributes) == {
        "mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "gen_ai.operation.name": "execute_tool",
        "error.type": "tool_error", "network.transport": "tcp", "network.protocol.name": "http",
        "network.protocol.version": "1.1"}


@pytest.mark.parametrize(("code", "error_type"), [(-32602, None), (-32601, None), (-32603, "-32603"), (0, "0")])
def test_json_rpc_errors_carry_their_code_and_only_the_servers_own_are_errors(make_telemetry, code, error_type):
    telemetry = make_telemetry()
    anyio.run(post, telemetry.instrument(mcp_app("json", code=code)), CALL)
    point = telemetry.collect().one(OPERATION)
    assert point.attributes.get("rpc.response.status_code") == str(code)
    assert point.attributes.get("error.type") == error_type


def test_the_operation_ends_at_its_response_event_not_at_the_streams_end(make_telemetry):
    telemetry = make_telemetry()

    async def slow_tail(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "more_body": True,
                    "body": _sse({"jsonrpc": "2.0", "id": 3, "result": {"content": []}})})
        await anyio.sleep(0.3)  # the stream stays open after the response
        await send({"type": "http.response.body", "body": b""})

    anyio.run(post, telemetry.instrument(slow_tail), CALL)
    view = telemetry.collect()
    assert view.one(OPERATION).sum < 0.2 < view.one("http.server.request.duration").sum


def test_a_session_from_initialize_to_delete_and_notifications_acknowledged(make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(mcp_app("sse"))
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
    anyio.run(post, app, json.dumps(initialize).encode())
    with_session = [(b"content-type", b"application/json"), (b"mcp-session-id", SESSION_ID),
                    (b"mcp-protocol-version", b"2025-06-18")]
    anyio.run(post, app, b'{"jsonrpc":"2.0","method":"notifications/initialized"}', None, "POST", "/x", with_session)
    view = telemetry.collect()
    assert view.one("mcp.server.session.active").value == 1
    assert not view.points(SESSION)
    assert view.one(OPERATION, mcp__method__name="initialize").attributes["mcp.protocol.version"] == "2025-06-18"
    assert view.one(OPERATION, mcp__method__name="notifications/initialized").count == 1
    anyio.run(post, app, b"", None, "DELETE", "/x", with_session)
    view = telemetry.collect()
    assert view.one("mcp.server.session.active").value == 0
    session = view.one(SESSION)
    assert session.count == 1 and dict(session.attributes) == {"mcp.protocol.version": "2025-06-18",
                                                               "network.protocol.name": "http"}
    assert all(SESSION_ID.decode() not in str(p.attributes) for points in view.by_name.values() for p in points)


def test_an_idle_session_ends_at_its_last_request(make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(mcp_app("json"))
    anyio.run(post, app, b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}')
    assert telemetry.collect().one("mcp.server.session.active").value == 1
    telemetry.registry.mcp.server_sessions.idle_timeout = 1e-9  # idle already: the next collection ends it
    view = telemetry.collect()
    assert view.one("mcp.server.session.active").value == 0
    assert telemetry.collect().one(SESSION).count == 1


def test_the_session_table_is_bounded():
    from otel_llm_metrics.mcp.stats import McpStats

    stats = McpStats()
    table = stats.server_sessions
    table.max_sessions = 50
    now = perf_counter()  # sessions that started just now: none idle, whatever the clock reads
    for i in range(1000):
        table.start(i, now + i / 1000, "v")
    assert len(table.open) == 50 and list(table.open)[0] == 950
    assert sum(sum(s.counts) for s in stats.server_session_group.snapshot("duration")) == 950


def test_ten_thousand_tool_names_stay_bounded_and_every_call_counts(make_telemetry):
    telemetry = make_telemetry(max_model_names=20)
    app = telemetry.instrument(mcp_app("json"))

    async def many():
        for i in range(10_000):
            body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": f"tool-{i}"}}
            await post(app, json.dumps(body).encode())
    anyio.run(many)
    points = telemetry.collect().points(OPERATION)
    names = {p.attributes.get("gen_ai.tool.name") for p in points}
    assert len(names) == 21 and "_OTHER" in names
    assert sum(p.count for p in points) == 10_000


@pytest.mark.parametrize("body", [
    b'{"jsonrpc":"2.0","id":1,"method":', b'{"jsonrpc": [1, 2, {"jsonrpc"', b'[' * 50_000 + b'"jsonrpc"',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":' + b'"x' * 10_000 + b'"}}',
])
def test_a_malformed_or_hostile_body_changes_nothing_the_app_sends_or_receives(make_telemetry, body):
    telemetry = make_telemetry()

    async def echo(scope, receive, send):
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": message["body"]})

    assert anyio.run(post, telemetry.instrument(echo), body) == body
    for point in telemetry.collect().points(OPERATION):
        assert len(point.attributes.get("gen_ai.tool.name", "")) <= 128


def test_requests_that_are_not_json_rpc_are_left_alone(make_telemetry, run):
    from tests.asgi_client import call

    telemetry = make_telemetry()
    app = telemetry.instrument(starlette_app())
    assert run(call(app, "POST", "/echo", body=b'{"model": "x", "messages": []}')).status == 200
    assert run(call(app, "GET", "/items/1")).status == 200
    assert not telemetry.collect().points(OPERATION)
