"""A client that leaves right after an answer's last event (issue 26, item 6: time to first token missing).

The OpenAI SDK stops reading at ``data: [DONE]`` and closes the connection. When the app still
awaits something after that event (a proxy closing its upstream, say), the client's disconnect
reaches the server before the app's final empty body message, and the request used to be recorded
as cancelled: no duration, no time to first token, no time per output token. The events below are
the bytes of ``tests/integration/proxy_app.py`` (an OpenAI front over Ollama, SSE sent as
``text/plain``); the app blocks after its last event until the client's disconnect cancels it,
which is the order that happened by chance, 1 or 2 times in 8, behind a public proxy.
"""

from __future__ import annotations

import asyncio
import json

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.asgi_client import call

DURATION, TTFT, TPOT, TOKENS = ("gen_ai.server.request.duration", "gen_ai.server.time_to_first_token",
                                "gen_ai.server.time_per_output_token", "gen_ai.server.token.usage")
WORDS = ("to ", "a ", "client ", "that ", "reads ", "them ", "as ", "they ", "arrive ")


def _proxy_events(usage: bool = True) -> list[bytes]:
    """What proxy_app.py writes: default json.dumps separators, one ASGI message per event."""
    def sse(payload: dict) -> bytes:
        return f"data: {json.dumps(payload)}\n\n".encode()

    base = {"id": "proxy-1", "object": "chat.completion.chunk", "model": "proxied"}
    events = [sse({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
              for word in WORDS]
    events.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}))
    if usage:
        events.append(sse({**base, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": len(WORDS),
                                                            "total_tokens": 4 + len(WORDS)}}))
    events.append(b"data: [DONE]\n\n")
    return events


def _ollama_events() -> list[bytes]:
    def line(fields: dict) -> bytes:
        return json.dumps({"model": "proxied", **fields}, separators=(",", ":")).encode() + b"\n"

    events = [line({"message": {"role": "assistant", "content": ""}, "done": False})]  # Ollama's empty first
    events += [line({"message": {"role": "assistant", "content": word}, "done": False}) for word in WORDS]
    events.append(line({"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "length",
                        "prompt_eval_count": 4, "eval_count": len(WORDS)}))
    return events


def _app(events: list[bytes], media_type: str | None, path: str, stop_after: int | None = None) -> Starlette:
    """Streams ``events`` (the first ``stop_after`` of them), then awaits something that never comes."""
    async def endpoint(request):
        async def body():
            for event in events[:stop_after]:
                yield event
            await anyio.Event().wait()  # closing the upstream, say: only the client's leaving ends it
        return StreamingResponse(body(), media_type=media_type)

    return Starlette(routes=[Route(path, endpoint, methods=["POST"])])


def _serve(telemetry, app, path: str, leave_after: int):
    result = asyncio.run(call(telemetry.instrument(app), "POST", path, body=b'{"model":"asked","stream":true}',
                              headers=[(b"content-type", b"application/json")],
                              disconnect_after_chunks=leave_after))
    assert result.raised is None
    return telemetry.collect()


@pytest.mark.parametrize("media_type", ["text/plain", None, "text/event-stream"])
def test_a_client_leaving_after_done_had_the_whole_answer(make_telemetry, media_type):
    events = _proxy_events()
    telemetry = make_telemetry()
    path = "/v1/chat/completions"
    _serve(telemetry, _app(events, media_type, path, stop_after=5), path, leave_after=5)  # cut off mid-answer
    view = _serve(telemetry, _app(events, media_type, path), path, leave_after=len(events))
    assert [p.attributes["http.stream.outcome"] for p in view.points("http.server.streams")] == ["client_cancelled"], \
        "neither HTTP response ended: each client left before its last message"
    assert view.total_count(TTFT) == 1, "the first token of the answer the client read to its end, only"
    assert view.total_count(DURATION) == 1 and view.total_count(TPOT) == 1
    output = view.one(TOKENS, gen_ai__token__type="output", gen_ai__usage__estimated=False)
    assert output.sum == len(WORDS), "the whole answer's usage"


def test_without_usage_the_finish_reason_says_the_answer_ended(make_telemetry):
    events = _proxy_events(usage=False)
    view = _serve(make_telemetry(), _app(events, "text/plain", "/v1/chat/completions"), "/v1/chat/completions",
                  leave_after=len(events))
    assert view.total_count(TTFT) == 1 and view.total_count(DURATION) == 1
    assert view.one(TOKENS, gen_ai__token__type="output").sum == len(WORDS)


def test_ollama_done_line_then_the_client_leaves(make_telemetry):
    events = _ollama_events()
    view = _serve(make_telemetry(), _app(events, "application/x-ndjson", "/api/chat"), "/api/chat",
                  leave_after=len(events))
    assert view.total_count(TTFT) == 1 and view.total_count(DURATION) == 1
