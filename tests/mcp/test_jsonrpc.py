"""The MCP dialect alone: what a JSON-RPC body or SSE answer says, however its bytes are split."""

from __future__ import annotations

import json

import pytest

from otel_llm_metrics.mcp import jsonrpc
from otel_llm_metrics.mcp.jsonrpc import MAYBE, NO, YES, Answer, Body, EventStream, Message

# An SSE answer as servers send it: a priming event (id, empty data), a comment, notifications (progress, a log
# line spread over two data lines), a server request (sampling), then the response, and an event after it.
SSE_LINES = [
    b"id: 0", b"data:", b"",
    b": keep-alive", b"",
    b"event: message", b'data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}', b"",
    b"event: message", b'data: {"jsonrpc":"2.0","method":"notifications/message",', b'data: "params":{"level":"info"}}',
    b"",
    b'data: {"jsonrpc":"2.0","id":"s-1","method":"sampling/createMessage","params":{}}', b"",
    b'data:{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a\\nb"}],"isError":true}}', b"",
    b'data: {"jsonrpc":"2.0","id":8,"error":{"code":-32602,"message":"Unknown tool"}}', b"",
]
EXPECTED = [Answer(7, None, True, None), Answer(8, -32602, False, None)]


def _transcript(ending: bytes) -> bytes:
    return b"".join(line + ending for line in SSE_LINES)


def _read_all(stream: EventStream, pieces: list[bytes]) -> list[Answer]:
    answers = []
    for piece in pieces:
        answers.extend(stream.feed(piece))
    answers.extend(stream.end())
    return answers


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_an_sse_answer_split_at_every_byte_gives_the_same_answers(ending):
    raw = _transcript(ending)
    assert _read_all(EventStream(), [raw]) == EXPECTED
    for cut in range(1, len(raw)):
        assert _read_all(EventStream(), [raw[:cut], raw[cut:]]) == EXPECTED, cut
    assert _read_all(EventStream(), [raw[i:i + 1] for i in range(len(raw))]) == EXPECTED


def test_each_answer_is_returned_by_the_chunk_that_ends_its_event():
    raw = _transcript(b"\r\n")
    end_of_first = raw.index(b'"isError":true}}') + len(b'"isError":true}}\r\n\r\n')
    stream = EventStream()
    assert stream.feed(raw[:end_of_first - 2]) == []  # the event's empty line has not begun
    assert stream.feed(raw[end_of_first - 2:end_of_first - 1]) == [EXPECTED[0]]  # its CR ends it already
    assert stream.feed(raw[end_of_first - 1:end_of_first]) == []


def test_an_event_past_the_bound_is_dropped_whole_and_the_next_one_read(monkeypatch):
    monkeypatch.setattr(jsonrpc, "MAX_MESSAGE", 64)
    big = b'data: {"jsonrpc":"2.0","id":1,"result":{"text":"' + b"x" * 200 + b'"}}\n\n'
    after = b'data: {"jsonrpc":"2.0","id":2,"result":{}}\n\n'
    stream = EventStream()
    answers = [a for i in range(0, len(big), 10) for a in stream.feed(big[i:i + 10])] + stream.feed(after)
    assert answers == [Answer(2, None, False, None)]
    assert len(stream.buffer) < 64


def test_a_json_body_gathered_in_pieces_reads_as_a_whole():
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-11-25"}}).encode()
    for cut in range(len(raw)):
        body = Body()
        body.feed(raw[:cut])
        body.feed(raw[cut:])
        assert jsonrpc.read_answers(body.whole()) == [Answer(1, None, False, "2025-11-25")]


def test_a_body_past_the_bound_is_not_kept(monkeypatch):
    monkeypatch.setattr(jsonrpc, "MAX_MESSAGE", 10)
    body = Body()
    body.feed(b"{" * 8)
    body.feed(b"{" * 8)
    assert body.whole() is None and body.chunks is None


@pytest.mark.parametrize(("first", "more", "verdict"), [
    (b'{"jsonrpc":"2.0","id":1,"method":"ping"}', False, YES),
    (b'  \n[{"jsonrpc":"2.0","method":"a"}]', False, YES),
    (b'{"model":"gpt","messages":[]}', False, NO),
    (b'{"method":"tools/call","params":{"arguments":{"x":"', True, MAYBE),  # jsonrpc last (the TypeScript SDK)
    (b"   ", True, MAYBE),
    (b"hello=world", False, NO),
    (b"<xml/>", True, NO),
    (b"", False, NO),
])
def test_sniffing_the_first_chunk(first, more, verdict):
    assert jsonrpc.sniff(first, more) == verdict


def test_requests_and_notifications_keep_only_what_is_recorded():
    batch = json.dumps([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": {"q": "x"}}},
        {"jsonrpc": "2.0", "id": "2", "method": "prompts/get", "params": {"name": "review"}},
        {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "file:///a"}},
        {"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 5, "result": {}},  # the client answering a server's request: not an operation
        {"jsonrpc": "2.0", "id": 6, "method": "tools/list",
         "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}},
        {"id": 7, "method": "no-jsonrpc-member"}, "not an object", {"jsonrpc": "2.0", "id": True, "method": "x"},
    ]).encode()
    assert jsonrpc.read_messages(batch) == [
        Message("tools/call", 1, "search", None, None), Message("prompts/get", "2", "review", None, None),
        Message("resources/read", 3, None, "file:///a", None), Message("initialize", 4, None, None, "2025-06-18"),
        Message("notifications/initialized", None, None, None, None),
        Message("tools/list", 6, None, None, "2026-07-28"), Message("x", None, None, None, None)]


@pytest.mark.parametrize("hostile", [
    b"", b"{", b"[[[[[[[[" * 10000, b'{"jsonrpc":"2.0","id":1,"method":' + b"9" * 5000 + b"}", b"\xff\xfe\x00{",
    b'{"jsonrpc":"2.0","id":{"a":1},"method":["x"]}', b'{"jsonrpc":"2.0","id":1,"error":"nope"}',
    b'{"jsonrpc":"2.0","id":1,"error":{"code":"-1"}}', b'{"jsonrpc":"2.0","id":1,"result":{"isError":"true"}}',
])
def test_hostile_bodies_read_as_little_as_they_say_and_never_raise(hostile):
    jsonrpc.read_messages(hostile)
    answers = jsonrpc.read_answers(hostile)
    assert all(a.code is None or isinstance(a.code, int) for a in answers)
    assert not any(a.tool_error for a in answers)
    stream = EventStream()
    stream.feed(b"data: " + hostile + b"\n\n")


def test_outcomes_follow_the_conventions_per_side():
    for code in (-32700, -32600, -32601, -32602, -32002):
        assert jsonrpc.outcome(code, False, served=True) == (None, str(code)), "the caller's mistake"
        assert jsonrpc.outcome(code, False, served=False) == (str(code), str(code))
    assert jsonrpc.outcome(-32603, False, served=True) == ("-32603", "-32603")
    assert jsonrpc.outcome(0, False, served=True) == ("0", "0")
    assert jsonrpc.outcome(None, True, served=True) == ("tool_error", None)
    assert jsonrpc.outcome(None, False, served=False) == (None, None)
