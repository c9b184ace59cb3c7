"""The Bedrock dialect in both directions, through the one LLM core: a Bedrock-compatible gateway served through
the middleware, and Bedrock called over httpx (LiteLLM signs Bedrock requests itself and sends them with httpx),
with tokens, finish reason and the stream's exception exact, and what the caller reads unchanged."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from otel_llm_metrics.client import instrumentors
from tests.asgi_client import call

MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
CONVERSE = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
                       "stopReason": "end_turn", "usage": {"inputTokens": 7, "outputTokens": 4, "totalTokens": 11},
                       "metrics": {"latencyMs": 5}}).encode()


def _frame(event_type: str, payload: dict, message_type: str = "event") -> bytes:
    """One AWS event-stream message, as the published format lays it out (prelude, CRCs, string headers)."""
    headers = b""
    for name, value in ((":event-type" if message_type == "event" else ":exception-type", event_type),
                        (":content-type", "application/json"), (":message-type", message_type)):
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return head + struct.pack(">I", zlib.crc32(head))


STREAM = b"".join([
    _frame("messageStart", {"role": "assistant"}),
    *[_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}}) for word in ("a", "b", "c")],
    _frame("messageStop", {"stopReason": "max_tokens"}),
    _frame("metadata", {"usage": {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12}, "metrics": {}}),
])
THROTTLED = _frame("messageStart", {"role": "assistant"}) + _frame(
    "throttlingException", {"message": "slow down"}, message_type="exception")
PATH = f"/model/{MODEL}/"


def _gateway() -> Starlette:
    async def converse(request):
        await request.body()
        return Response(CONVERSE, media_type="application/json")

    async def converse_stream(request):
        await request.body()

        async def pieces():
            for start in range(0, len(STREAM), 29):
                yield STREAM[start:start + 29]
        return StreamingResponse(pieces(), media_type="application/vnd.amazon.eventstream")

    return Starlette(routes=[Route(PATH + "converse", converse, methods=["POST"]),
                             Route(PATH + "converse-stream", converse_stream, methods=["POST"])])


def _tokens(view, name: str) -> dict[str, float]:
    return {p.attributes["gen_ai.token.type"]: p.sum for p in view.points(name)}


@pytest.mark.parametrize(("action", "body", "tokens", "finish"), [
    ("converse", CONVERSE, {"input": 7, "output": 4}, "end_turn"),
    ("converse-stream", STREAM, {"input": 9, "output": 3}, "max_tokens")])
def test_a_bedrock_compatible_gateway_is_measured_as_served(make_telemetry, action, body, tokens, finish):
    telemetry = make_telemetry()
    app = telemetry.instrument(_gateway())
    result = asyncio.run(call(app, "POST", PATH + action, body=b'{"messages": []}'))
    assert result.raised is None and result.body == body
    view = telemetry.collect()
    assert _tokens(view, "gen_ai.server.token.usage") == tokens
    (duration,) = view.points("gen_ai.server.request.duration")
    assert duration.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert duration.attributes["gen_ai.request.model"] == MODEL
    (responses,) = view.points("gen_ai.server.responses")
    assert responses.attributes.get("gen_ai.response.finish_reason") == finish


def _transport(body: bytes, content_type: str, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    class Stream(httpx.SyncByteStream):
        def __iter__(self):
            for start in range(0, len(body), 13):
                yield body[start:start + 13]

    return httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": content_type, **(headers or {})}, stream=Stream()))


@pytest.mark.parametrize(("action", "body", "content_type", "tokens", "error"), [
    ("converse", CONVERSE, "application/json", {"input": 7, "output": 4}, None),
    ("converse-stream", STREAM, "application/vnd.amazon.eventstream", {"input": 9, "output": 3}, None),
    ("converse-stream", THROTTLED, "application/vnd.amazon.eventstream", {}, "throttlingException")])
def test_bedrock_called_over_httpx_as_litellm_does(make_telemetry, action, body, content_type, tokens, error):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    try:
        url = f"https://bedrock-runtime.us-east-1.amazonaws.com{PATH}{action}"
        with httpx.Client(transport=_transport(body, content_type)) as client, \
                client.stream("POST", url, content=b'{"messages": []}') as answer:
            read = b"".join(answer.iter_raw())
    finally:
        instrumentors.uninstall()
    assert read == body, "the caller reads every byte, unchanged"
    view = telemetry.collect()
    assert {k: v for k, v in _tokens(view, "gen_ai.client.token.usage").items() if v} == tokens
    (duration,) = view.points("gen_ai.client.operation.duration")
    assert duration.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert duration.attributes["gen_ai.request.model"] == MODEL
    assert duration.attributes.get("error.type") == error


MISTRAL = "mistral.mistral-7b-instruct-v0:2"
TOKEN_HEADERS = {"X-Amzn-Bedrock-Input-Token-Count": "30", "X-Amzn-Bedrock-Output-Token-Count": "7",
                 "X-Amzn-Bedrock-Invocation-Latency": "250"}


@pytest.mark.parametrize(("body", "tokens"), [
    # Mistral's InvokeModel body has no usage: Bedrock's headers are the only count
    pytest.param(json.dumps({"outputs": [{"text": "hi", "stop_reason": "length"}]}).encode(),
                 {"input": 30, "output": 7}, id="headers-only"),
    # a body with usage is believed over the headers
    pytest.param(json.dumps({"id": "m", "type": "message", "role": "assistant", "stop_reason": "end_turn",
                             "content": [{"type": "text", "text": "hi"}],
                             "usage": {"input_tokens": 13, "output_tokens": 5}}).encode(),
                 {"input": 13, "output": 5}, id="body-usage")])
def test_bedrock_token_headers_over_httpx_where_the_body_has_no_usage(make_telemetry, body, tokens):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    try:
        url = f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{MISTRAL}/invoke"
        with httpx.Client(transport=_transport(body, "application/json", TOKEN_HEADERS)) as client:
            answer = client.post(url, content=b'{"prompt": "hi"}')
    finally:
        telemetry.registry.gen_ai.prices.wait_loaded()  # its loader imports httpx2 while uninstall looks at it
        instrumentors.uninstall()
    assert answer.content == body
    view = telemetry.collect()
    assert _tokens(view, "gen_ai.client.token.usage") == tokens
    (duration,) = view.points("gen_ai.client.operation.duration")
    assert duration.attributes["gen_ai.request.model"] == MISTRAL and "error.type" not in duration.attributes
