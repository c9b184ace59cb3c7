"""LiteLLM's Bedrock calls (``litellm.acompletion(model="bedrock/...")``, its Converse route), measured at the wire.

LiteLLM signs Bedrock requests itself and sends them with httpx (through its aiohttp transport by default, or
httpx's own when ``disable_aiohttp_transport`` is set): none of botocore's sending is involved. Real LiteLLM
talks to a stand-in for the Bedrock runtime endpoint on a free loopback port (``aws_bedrock_runtime_endpoint``),
which answers with AWS's published formats (``bedrock_frames``); the numbers are the answers' own, exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

import pytest

from otel_llm_metrics.client import instrumentors
from otel_llm_metrics.llm.exchange import LlmExchange
from tests.llm.bedrock_frames import CONVERSE_ANSWER, converse_stream
from tests.stand_in import serving

DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
TTFC = "gen_ai.client.operation.time_to_first_chunk"
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
STREAM_TYPE = "application/vnd.amazon.eventstream"
THROTTLED = b'{"message":"Too many requests, please wait before trying again."}'
MESSAGES = [{"role": "user", "content": "Hello"}]


class Bedrock(BaseHTTPRequestHandler):
    """Converse and ConverseStream by the path's action; a model named ``throttle...`` gets Bedrock's 429."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK
    seen: list[tuple[str, str]] = []  # (model, action) of every request, in order

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        path = self.path.split("?")[0]
        model, action = unquote(path.split("/")[2]), path.rsplit("/", 1)[1]
        type(self).seen.append((model, action))
        if model.startswith("throttle"):
            self._answer(429, THROTTLED, "application/json", [("x-amzn-ErrorType", "ThrottlingException:http://internal/")])
        elif action == "converse-stream":
            self._answer(200, converse_stream(stop="max_tokens"), STREAM_TYPE)
        elif action == "converse":
            self._answer(200, json.dumps(CONVERSE_ANSWER).encode(), "application/json")
        else:
            self._answer(404, b'{"message":"unknown operation"}', "application/json")

    def _answer(self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for at in range(0, len(body), 37):  # odd pieces: frames split across chunks
            piece = body[at:at + 37]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """The stand-in Bedrock runtime endpoint, on a port the system picks; stopped after the module."""
    with serving(Bedrock) as url:
        yield url


@pytest.fixture(params=["aiohttp", "httpx"])
def litellm(request, monkeypatch):
    """LiteLLM with dummy AWS credentials, its price map from the package (no network), and the transport asked
    for: its default (aiohttp under httpx's client) or httpx's own. Its cached clients are dropped either side;
    ``aiohttp_requests`` counts the requests aiohttp sent, so a test can tell the transport really was the one."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_NAME", "AWS_WEB_IDENTITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION_NAME", "us-east-1")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import aiohttp
    import litellm

    sent: list[str] = []
    send = aiohttp.ClientSession._request

    async def counted(self: aiohttp.ClientSession, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(url))
        return await send(self, method, url, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", counted)  # before our hook wraps it (``wire``)
    monkeypatch.setattr(litellm, "disable_aiohttp_transport", request.param == "httpx")
    litellm.in_memory_llm_clients_cache.flush_cache()
    Bedrock.seen = []
    yield litellm
    assert bool(sent) == (request.param == "aiohttp"), f"LiteLLM's {request.param} transport sent: {sent}"
    litellm.in_memory_llm_clients_cache.flush_cache()


@pytest.fixture
def wire(make_telemetry, monkeypatch):
    """A Telemetry measuring this process's calls, as ``setup()`` does; each recorded call's finish reason, as
    the reader our hook used read it (the client side has no finish-reason metric to look at)."""
    finish_reasons: list[str | None] = []
    record_call = LlmExchange.record_call

    def spy(self: LlmExchange, *args: Any, **kwargs: Any) -> None:
        record_call(self, *args, **kwargs)  # it finishes the reader: a JSON answer is read at its end
        finish_reasons.append(self.parser.finish_reason if self.parser is not None else None)

    monkeypatch.setattr(LlmExchange, "record_call", spy)
    telemetry = make_telemetry()
    assert {"httpx", "aiohttp"} <= set(telemetry.measure_upstream_calls())
    telemetry.finish_reasons = finish_reasons  # type: ignore[attr-defined]
    yield telemetry
    telemetry.registry.gen_ai.prices.wait_loaded()  # its loader imports httpx2 while uninstall looks at it
    instrumentors.uninstall()


def _tokens(view: Any) -> dict[str, int]:
    """Token sums by type."""
    found: dict[str, int] = {}
    for point in view.points(TOKENS):
        kind = point.attributes["gen_ai.token.type"]
        found[kind] = found.get(kind, 0) + point.sum
    return found


def _complete(litellm: Any, endpoint: str, model: str, stream: bool) -> Any:
    """One ``litellm.acompletion`` in its own loop; a stream read to its end."""
    async def main() -> Any:
        answer = await litellm.acompletion(model=f"bedrock/{model}", messages=MESSAGES, stream=stream,
                                           aws_bedrock_runtime_endpoint=endpoint, num_retries=0)
        return [chunk async for chunk in answer] if stream else answer

    return asyncio.run(main())


def test_converse(litellm, endpoint, wire):
    answer = _complete(litellm, endpoint, HAIKU, stream=False)
    assert answer.choices[0].message.content == "Hello!" and answer.usage.prompt_tokens == 7
    assert Bedrock.seen == [(HAIKU, "converse")], "LiteLLM's Converse route, to the stand-in"
    view = wire.collect()
    (point,) = view.points(DURATION)
    assert point.count == 1
    assert point.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert point.attributes["gen_ai.operation.name"] == "chat"
    assert point.attributes["gen_ai.request.model"] == HAIKU
    assert "error.type" not in point.attributes
    assert _tokens(view) == {"input": 7, "output": 4}
    assert view.one(ATTEMPTS).value == 1
    assert view.total_count(TTFC) == 0, "a whole JSON answer has no first chunk"
    assert wire.finish_reasons == ["end_turn"]


def test_converse_stream(litellm, endpoint, wire):
    chunks = _complete(litellm, endpoint, HAIKU, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "word0 word1 word2 "
    assert Bedrock.seen == [(HAIKU, "converse-stream")]
    view = wire.collect()
    (point,) = view.points(DURATION)
    assert point.count == 1
    assert point.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert point.attributes["gen_ai.request.model"] == HAIKU
    assert "error.type" not in point.attributes
    assert _tokens(view) == {"input": 9, "output": 3}
    assert view.one(ATTEMPTS).value == 1
    (first,) = view.points(TTFC)
    assert first.count == 1 and 0 < first.sum <= point.sum
    assert wire.finish_reasons == ["max_tokens"]


def test_throttled_is_one_failed_operation(litellm, endpoint, wire):
    with pytest.raises(litellm.RateLimitError):
        _complete(litellm, endpoint, "throttle-model", stream=False)
    assert Bedrock.seen == [("throttle-model", "converse")], "num_retries=0: one attempt"
    view = wire.collect()
    (point,) = view.points(DURATION)
    assert point.count == 1
    assert point.attributes["error.type"] == "429"
    assert point.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert point.attributes["gen_ai.request.model"] == "throttle-model"
    assert {p.attributes.get("error.type"): p.value for p in view.points(ATTEMPTS)} == {"429": 1}
    assert _tokens(view) == {}
