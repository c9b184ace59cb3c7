"""The official google-genai SDK, sync and async, streamed and not, against a local upstream that
serves the Gemini wire transcripts through our middleware: the served side records what each
transcript's truth says (tokens by type, models, finish reason, operation, provider, errors).

The upstream is uvicorn in a thread on a free loopback port; each test instruments the transcript
app with its own in-memory telemetry, so the numbers checked are exactly that test's.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from tests.integration.servers import free_port, wait_for

pytestmark = pytest.mark.integration
TRANSCRIPTS = Path(__file__).resolve().parents[1] / "llm" / "transcripts"
TRUTH = json.loads((TRANSCRIPTS / "truth.json").read_text())
DURATION, TOKENS, RESPONSES = ("gen_ai.server.request.duration", "gen_ai.server.token.usage",
                               "gen_ai.server.responses")
_EVENT = re.compile(rb".*?(?:\n\r?\n|\Z)", re.S)  # an SSE event with its blank line (the rest: one piece)


def _transcript(stem: str) -> tuple[str, dict, bytes]:
    name = next(name for name in TRUTH if name.rsplit(".", 1)[0] == stem)
    return name, TRUTH[name], (TRANSCRIPTS / name).read_bytes()


async def _transcript_app(scope, receive, send) -> None:
    """``.../models/{stem}:method`` answers with transcript ``stem``, event by event, as Google streams."""
    while (await receive()).get("more_body"):
        pass
    stem = scope["path"].rsplit("/", 1)[1].split(":", 1)[0]
    _, truth, body = _transcript(stem)
    status = 429 if stem == "gemini_429" else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", truth["content_type"].encode())]})
    for piece in [piece for piece in _EVENT.findall(body) if piece]:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class Upstream:
    """uvicorn serving whichever instrumented app the running test installed."""

    def __init__(self) -> None:
        self.app = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        async def dispatch(scope, receive, send):
            await self.app(scope, receive, send)

        config = uvicorn.Config(dispatch, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gemini-upstream", daemon=True)

    def serve(self, telemetry):  # noqa: ANN001, ANN201 - a test Telemetry
        self.app = telemetry.instrument(_transcript_app)
        return telemetry


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.thread.start()
    wait_for(lambda: server.server.started, "uvicorn serving the Gemini transcripts")
    yield server
    server.server.should_exit = True
    server.thread.join(10)
    assert not server.thread.is_alive()


def _client(upstream: Upstream, vertex: bool) -> genai.Client:
    options = types.HttpOptions(base_url=upstream.url, timeout=10_000,
                                retry_options=types.HttpRetryOptions(attempts=1))
    if vertex:  # a token that never expires: the SDK sends it and never tries to refresh it
        return genai.Client(vertexai=True, project="demo-project", location="us-central1",
                            credentials=Credentials(token="dummy-token"), http_options=options)
    return genai.Client(api_key="dummy-key", http_options=options)


def _call(client: genai.Client, stem: str, stream: bool, use_async: bool) -> list:
    """The responses the SDK returned: one, or each streamed chunk."""
    if not use_async:
        if stream:
            return list(client.models.generate_content_stream(model=stem, contents="Hello"))
        return [client.models.generate_content(model=stem, contents="Hello")]

    async def run() -> list:
        if stream:
            return [chunk async for chunk in await client.aio.models.generate_content_stream(model=stem,
                                                                                             contents="Hello")]
        return [await client.aio.models.generate_content(model=stem, contents="Hello")]
    return asyncio.run(run())


def _recorded(telemetry):  # noqa: ANN001, ANN202
    """The served side's view once the request is recorded (the middleware records as the app returns)."""
    return wait_for(lambda: (view := telemetry.collect()).points(DURATION) and view, "the request recorded")


def _token_sums(view) -> dict:  # noqa: ANN001
    """Token sums by type (the released conventions' one attribute; cached and reasoning tokens are inside)."""
    sums: dict = {}
    for point in view.points(TOKENS):
        kind = point.attributes["gen_ai.token.type"]
        sums[kind] = sums.get(kind, 0) + point.sum
    return sums


def _expected_tokens(truth: dict) -> dict:
    """What the truth's totals become as series: input and output, where reported."""
    return {kind: truth[kind] for kind in ("input", "output") if truth[kind] is not None}


@pytest.mark.parametrize(("stem", "stream", "use_async"), [
    ("gemini_generate", False, False),
    ("gemini_cached", False, True),
    ("gemini_max_tokens", False, False),
    ("gemini_stream", True, False),
    ("gemini_stream", True, True),
    ("gemini_vertex_thinking", True, False),
    ("gemini_vertex_thinking", True, True),
])
def test_sdk_calls_are_recorded_as_their_transcript_says(upstream, make_telemetry, stem, stream, use_async):
    _, truth, _ = _transcript(stem)
    telemetry = upstream.serve(make_telemetry())
    vertex = truth["provider"] == "gcp.vertex_ai"
    responses = _call(_client(upstream, vertex), stem, stream, use_async)

    last = responses[-1]
    assert last.model_version == truth["model"], "the SDK understood the transcript"
    assert (last.usage_metadata.prompt_token_count, last.usage_metadata.thoughts_token_count) == (
        truth["input"], truth["reasoning"])
    assert len(responses) == (truth["deltas"] if stream else 1)

    view = _recorded(telemetry)
    (duration,) = view.points(DURATION)
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "generate_content", "gen_ai.provider.name": truth["provider"],
        "gen_ai.request.model": stem, "gen_ai.response.model": truth["model"]}, "no error.type either"
    assert _token_sums(view) == _expected_tokens(truth)
    (answered,) = view.points(RESPONSES)
    assert answered.value == 1 and answered.attributes["gen_ai.response.finish_reason"] == truth["finish"]
    first_tokens = view.points("gen_ai.server.time_to_first_token")
    assert sum(point.count for point in first_tokens) == (1 if stream else 0)


def test_a_429_is_an_error_of_that_status(upstream, make_telemetry):
    telemetry = upstream.serve(make_telemetry())
    with pytest.raises(errors.ClientError) as raised:
        _call(_client(upstream, vertex=False), "gemini_429", stream=False, use_async=False)
    assert raised.value.code == 429 and raised.value.status == "RESOURCE_EXHAUSTED"

    view = _recorded(telemetry)
    (duration,) = view.points(DURATION)
    assert duration.attributes["error.type"] == "429"
    assert duration.attributes["gen_ai.request.model"] == "gemini_429"
    assert not view.points(RESPONSES) and not view.points(TOKENS)


@pytest.mark.parametrize("use_async", [False, True])
def test_an_error_appended_to_a_200_stream_is_an_error(upstream, make_telemetry, use_async):
    _, truth, _ = _transcript("gemini_stream_error")
    telemetry = upstream.serve(make_telemetry())
    with pytest.raises(errors.ServerError) as raised:
        _call(_client(upstream, vertex=False), "gemini_stream_error", stream=True, use_async=use_async)
    assert raised.value.code == 503, "the SDK raised the error Google appended to the stream"

    view = _recorded(telemetry)
    (duration,) = view.points(DURATION)
    assert duration.attributes["error.type"] == "_OTHER"
    assert duration.attributes["gen_ai.response.model"] == truth["model"]
    assert _token_sums(view) == {"input": truth["input"], "output": truth["output"]}
    estimated = {point.attributes["gen_ai.token.type"]: point.attributes["gen_ai.usage.estimated"]
                 for point in view.points(TOKENS)}
    assert estimated == {"input": False, "output": True}
    assert not view.points(RESPONSES)


@pytest.mark.parametrize("use_async", [False, True])
def test_vertex_embeddings(upstream, make_telemetry, use_async):
    _, truth, _ = _transcript("gemini_vertex_embed")
    telemetry = upstream.serve(make_telemetry())
    client = _client(upstream, vertex=True)
    if use_async:
        result = asyncio.run(client.aio.models.embed_content(model="gemini_vertex_embed", contents="hello"))
    else:
        result = client.models.embed_content(model="gemini_vertex_embed", contents="hello")
    assert result.embeddings and len(result.embeddings[0].values) == 6

    view = _recorded(telemetry)
    (duration,) = view.points(DURATION)
    assert dict(duration.attributes) == {"gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "gcp.vertex_ai",
                                         "gen_ai.request.model": "gemini_vertex_embed"}
    assert _token_sums(view) == {"input": truth["input"]}
