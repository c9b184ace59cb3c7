"""The calls made in-process: an MCP client's requests over httpx and httpx2, answers split at every byte."""

from __future__ import annotations

import json

import anyio
import httpx
import httpx2
import pytest

from otel_llm_metrics.client import instrumentors

OPERATION, SESSION = "mcp.client.operation.duration", "mcp.client.session.duration"
CALL = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search", "arguments": {}}}
ANSWER = (b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\r\n\r\n'
          b'event: message\r\ndata: {"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Unknown tool"}}\r\n\r\n')


def _server(module, cut: int | None = None, status: int = 200):
    """A transport answering like an MCP server: initialize opens session s-1, requests get ``ANSWER`` as SSE
    (in two chunks cut at ``cut``), notifications 202, DELETE 200."""

    class Chunks(module.SyncByteStream, module.AsyncByteStream):
        def __init__(self, chunks):
            self.chunks = chunks

        def __iter__(self):
            yield from self.chunks

        async def __aiter__(self):
            for chunk in self.chunks:
                yield chunk

    class Transport(module.BaseTransport, module.AsyncBaseTransport):
        def handle_request(self, request):
            if request.method == "DELETE":
                return module.Response(200, stream=Chunks([]))
            message = json.loads(request.read() or b"{}")
            if "id" not in message:
                return module.Response(202, stream=Chunks([]))
            headers = [("content-type", "text/event-stream")]
            if status >= 400:
                return module.Response(status, headers=[("content-type", "text/plain")], stream=Chunks([b"down"]))
            if message["method"] == "initialize":
                body = b'data: {"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}\n\n'
                headers.append(("mcp-session-id", "s-1"))
            else:
                body = ANSWER
            at = len(body) // 2 if cut is None else cut
            return module.Response(status, headers=headers, stream=Chunks([body[:at], body[at:]]))

        async def handle_async_request(self, request):
            return self.handle_request(request)

    return Transport()


def _exchange(module, transport, use_async: bool, messages: list[dict], delete: bool = False) -> list[bytes]:
    url = "http://mcp.test:8123/mcp"
    headers = {"accept": "application/json, text/event-stream", "mcp-session-id": "s-1"}

    async def main():
        out = []
        async with module.AsyncClient(transport=transport) as client:
            for message in messages:
                async with client.stream("POST", url, json=message, headers=headers) as answer:
                    out.append(b"".join([part async for part in answer.aiter_raw()]))
            if delete:
                await client.delete(url, headers=headers)
        return out

    if use_async:
        return anyio.run(main)
    out = []
    with module.Client(transport=transport) as client:
        for message in messages:
            with client.stream("POST", url, json=message, headers=headers) as answer:
                out.append(b"".join(answer.iter_raw()))
        if delete:
            client.delete(url, headers=headers)
    return out


@pytest.fixture
def wire(make_telemetry):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    yield telemetry
    instrumentors.uninstall()


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_an_answer_split_at_every_byte_reads_the_same_and_counts_once(wire, module):
    instrumentors.uninstall()
    bare = _exchange(module, _server(module), False, [CALL])
    wire.measure_upstream_calls()
    for cut in range(len(ANSWER) + 1):
        assert _exchange(module, _server(module, cut), cut % 2 == 0, [CALL]) == bare
    point = wire.collect().one(OPERATION)
    assert point.count == len(ANSWER) + 1
    assert dict(point.attributes) == {
        "mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "gen_ai.operation.name": "execute_tool",
        "error.type": "-32602", "rpc.response.status_code": "-32602", "network.transport": "tcp",
        "network.protocol.name": "http", "network.protocol.version": "1.1", "server.address": "mcp.test",
        "server.port": 8123}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_session_from_initialize_to_delete(wire, use_async):
    messages = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}},
                {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    _exchange(httpx2, _server(httpx2), use_async, messages, delete=False)
    view = wire.collect()
    assert view.one("mcp.client.session.active").value == 1
    assert view.one(OPERATION, mcp__method__name="notifications/initialized").count == 1
    _exchange(httpx2, _server(httpx2), use_async, [], delete=True)
    view = wire.collect()
    assert view.one("mcp.client.session.active").value == 0
    session = view.one(SESSION)
    assert session.count == 1 and session.attributes["mcp.protocol.version"] == "2025-06-18"
    assert session.attributes["server.address"] == "mcp.test"


def test_an_http_error_without_a_json_rpc_answer_is_its_status(wire):
    _exchange(httpx, _server(httpx, status=500), False, [CALL])
    assert wire.collect().one(OPERATION).attributes["error.type"] == "500"


def test_other_requests_are_left_alone(wire):
    transport = _server(httpx)
    with httpx.Client(transport=transport) as client:
        client.post("http://x.test/api", json={"jsonrpc": "not-in-this-sense", "model": "x"}).read()
        client.get("http://x.test/mcp")
    assert not wire.collect().points(OPERATION)
