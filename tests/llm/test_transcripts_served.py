"""Every wire transcript served by a real Starlette app, under text/plain, through the middleware:
the client gets every byte unchanged, and the GenAI metrics say what the transcript's truth says
(operation, provider, request model: the one the path names for Gemini, else the request body's)."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.asgi_client import call
from tests.llm.expectations import assert_tokens
from tests.llm.test_transcripts import HERE, TRUTH

TOKENS, RESPONSES = "gen_ai.server.token.usage", "gen_ai.server.responses"


def _replaying_app(body: bytes, media_type: str) -> Starlette:
    """An app that relays an upstream's bytes as they come, in uneven pieces, like a proxy."""
    async def relay(request):
        await request.body()

        async def pieces():
            for start in range(0, len(body), 37):
                yield body[start:start + 37]
        return StreamingResponse(pieces(), media_type=media_type)

    paths = {truth["path"] for truth in TRUTH.values()}
    return Starlette(routes=[Route(path, relay, methods=["POST"]) for path in paths])


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_a_transcript_served_as_text_plain_gives_its_truth(make_telemetry, name):
    truth = TRUTH[name]
    body = (HERE / name).read_bytes()
    telemetry = make_telemetry()
    app = telemetry.instrument(_replaying_app(body, "text/plain"))
    request = json.dumps({"model": "requested-model", "stream": True, "messages": []}).encode()
    result = asyncio.run(call(app, "POST", truth["path"], body=request))
    assert result.raised is None and result.body == body, "the client gets every byte, unchanged"

    view = telemetry.collect()
    request_model = truth["request_model"] or "requested-model"
    assert_tokens(view.points(TOKENS), truth)
    assert all(point.attributes["gen_ai.request.model"] == request_model for point in view.points(TOKENS))

    durations = view.points("gen_ai.server.request.duration")
    assert len(durations) == 1
    attributes = durations[0].attributes
    assert attributes["gen_ai.provider.name"] == truth["provider"]
    assert attributes["gen_ai.operation.name"] == truth["operation"]
    assert attributes["gen_ai.request.model"] == request_model
    if truth["error"]:
        assert durations[0].attributes["error.type"] == "_OTHER", "an error event inside a 200 is an error"
        assert not view.points(RESPONSES)
    else:
        (responses,) = view.points(RESPONSES)
        assert responses.value == 1 and responses.attributes.get("gen_ai.response.finish_reason") == truth["finish"]
    streamed = truth["first_content"] is not None and len(body) > 37
    if streamed and not truth["error"]:
        assert view.one("gen_ai.server.time_to_first_token").count == 1
