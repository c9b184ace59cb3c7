"""GenAI metrics through the middleware, on the real demo app and on fixed byte streams."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import StreamingResponse
from starlette.routing import Route

from otel_llm_metrics.demo import app as demo
from tests.asgi_client import call
from tests.llm.test_parse import chat_stream

DURATION, TTFT, TPOT, TOKENS = ("gen_ai.server.request.duration", "gen_ai.server.time_to_first_token",
                                "gen_ai.server.time_per_output_token", "gen_ai.server.token.usage")


def post(app, path: str, payload: dict, **kwargs):
    body = json.dumps(payload).encode()
    return asyncio.run(call(app, "POST", path, body=body, headers=[(b"content-type", b"application/json")],
                            **kwargs))


def chat(stream: bool, **extra) -> dict:
    return {"model": "asked-model", "messages": [{"role": "user", "content": "three word prompt"}],
            "max_tokens": 6, "stream": stream, **extra}


@pytest.fixture
def demo_app(make_telemetry, monkeypatch):
    monkeypatch.setattr(demo.upstream, "first_token_seconds", 0.03)
    monkeypatch.setattr(demo.upstream, "tokens_per_second", 1000.0)
    monkeypatch.setattr(demo.upstream, "fail_rate", 0.0)
    telemetry = make_telemetry()
    return telemetry, telemetry.instrument(demo.app)


def test_streamed_chat_with_usage(demo_app):
    telemetry, app = demo_app
    result = post(app, "/v1/chat/completions", chat(True, stream_options={"include_usage": True}))
    assert result.status == 200 and b"[DONE]" in result.body
    view = telemetry.collect()
    attrs = {"gen_ai__operation__name": "chat", "gen_ai__provider__name": "openai",
             "gen_ai__request__model": "asked-model", "gen_ai__response__model": "asked-model"}
    assert view.one(DURATION, **attrs).count == 1
    ttft = view.one(TTFT, **attrs)
    assert ttft.count == 1 and 0.03 <= ttft.sum < 1.0, "first token comes after the simulated delay"
    assert view.one(TPOT, **attrs).count == 1
    assert view.one(TOKENS, gen_ai__token__type="input").sum == 3
    output = view.one(TOKENS, gen_ai__token__type="output")
    assert output.sum == 6 and output.attributes["gen_ai.usage.estimated"] is False


def test_streamed_chat_without_usage_is_estimated(demo_app):
    telemetry, app = demo_app
    post(app, "/v1/chat/completions", chat(True))
    view = telemetry.collect()
    output = view.one(TOKENS, gen_ai__token__type="output")
    assert output.sum == 6 and output.attributes["gen_ai.usage.estimated"] is True
    assert not [p for p in view.points(TOKENS) if p.attributes["gen_ai.token.type"] == "input"], \
        "input tokens are never guessed"


def test_non_streamed_chat_completion_and_embeddings(demo_app):
    telemetry, app = demo_app
    post(app, "/v1/chat/completions", chat(False))
    post(app, "/v1/completions", {"model": "text-model", "prompt": "one two", "max_tokens": 4})
    post(app, "/v1/embeddings", {"model": "embedder", "input": ["a b c", "d e"]})
    view = telemetry.collect()
    assert view.one(TOKENS, gen_ai__operation__name="chat", gen_ai__token__type="output").sum == 6
    assert view.one(TOKENS, gen_ai__operation__name="text_completion", gen_ai__token__type="output").sum == 4
    assert view.one(TOKENS, gen_ai__operation__name="embeddings", gen_ai__token__type="input").sum == 5
    assert not view.points(TTFT), "no time to first token without a stream"
    assert len(view.points(DURATION)) == 3


def test_ollama_native_api(demo_app):
    telemetry, app = demo_app
    result = post(app, "/api/chat", {"model": "llama3", "messages": [{"role": "user", "content": "hi you"}],
                                     "options": {"num_predict": 5}})
    assert result.body.count(b"\n") == 6
    post(app, "/api/generate", {"model": "llama3", "prompt": "a b c d", "stream": False,
                                "options": {"num_predict": 3}})
    view = telemetry.collect()
    chat_tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in view.points(TOKENS)
                   if p.attributes["gen_ai.operation.name"] == "chat"}
    assert chat_tokens == {"input": 2, "output": 5}
    assert view.one(TOKENS, gen_ai__operation__name="text_completion", gen_ai__token__type="input").sum == 4
    assert view.one(TTFT, gen_ai__provider__name="ollama").count == 1


def test_compressed_responses_are_timed_not_parsed(make_telemetry):
    telemetry = make_telemetry()
    app = telemetry.instrument(GZipMiddleware(demo.app, minimum_size=10))
    result = post(app, "/v1/chat/completions", chat(False), )
    assert result.header(b"content-encoding") is None  # the test client asked for no gzip
    gz = asyncio.run(call(app, "POST", "/v1/chat/completions", body=json.dumps(chat(False)).encode(),
                          headers=[(b"content-type", b"application/json"), (b"accept-encoding", b"gzip")]))
    assert gz.header(b"content-encoding") == b"gzip"
    assert json.loads(gzip.decompress(gz.body))["usage"]["completion_tokens"] == 6
    view = telemetry.collect()
    assert view.total_count(DURATION) == 2
    assert view.total_count(TOKENS) == 2, "only the uncompressed answer gave token counts (input + output)"


def test_response_reaches_the_client_byte_for_byte(make_telemetry):
    events = chat_stream(20, text="caf\u00e9 ")

    async def stream(request):
        async def chunks():
            for event in events:
                yield event
        return StreamingResponse(chunks(), media_type="text/event-stream")

    def make():
        return Starlette(routes=[Route("/v1/chat/completions", stream, methods=["POST"])])

    bare = post(make(), "/v1/chat/completions", chat(True))
    instrumented = post(make_telemetry().instrument(make()), "/v1/chat/completions", chat(True))
    assert instrumented.chunks == bare.chunks == events


def test_model_names_from_clients_are_capped(make_telemetry):
    telemetry = make_telemetry(max_model_names=5)
    app = telemetry.instrument(demo.app)
    for i in range(40):
        post(app, "/v1/embeddings", {"model": f"client-model-{i}-" + "x" * 300, "input": "a"})
    models = {p.attributes.get("gen_ai.request.model") for p in telemetry.collect().points(DURATION)}
    assert len(models) == 6 and "_OTHER" in models
    assert all(len(m) <= 128 for m in models)


def test_cancelled_stream_counts_tokens_but_no_latency(demo_app):
    telemetry, app = demo_app
    post(app, "/v1/chat/completions", {**chat(True), "max_tokens": 500}, disconnect_after_chunks=4)
    view = telemetry.collect()
    assert not view.points(DURATION), "an abandoned answer is not a latency sample"
    output = view.one(TOKENS, gen_ai__token__type="output")
    assert output.attributes["gen_ai.usage.estimated"] is True and 1 <= output.sum < 500


def test_upstream_failure_sets_error_type(demo_app, monkeypatch):
    telemetry, app = demo_app
    monkeypatch.setattr(demo.upstream, "fail_rate", 1.0)
    assert post(app, "/v1/chat/completions", chat(False)).status == 502
    post(app, "/v1/chat/completions", chat(True))
    errors = sorted(str(p.attributes.get("error.type")) for p in telemetry.collect().points(DURATION))
    assert errors == ["502", "otel_llm_metrics.demo.upstream.UpstreamError"]


def test_parsing_can_be_turned_off(make_telemetry):
    telemetry = make_telemetry(llm_parsing=False)
    post(telemetry.instrument(demo.app), "/v1/embeddings", {"model": "e", "input": "a"})
    view = telemetry.collect()
    assert not view.points(DURATION) and view.total_count("http.server.request.duration") == 1


def test_a_parser_failure_stops_parsing_never_the_response(demo_app, monkeypatch, caplog):
    from otel_llm_metrics.llm.parse import ResponseParser

    telemetry, app = demo_app

    def broken(self, body):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(ResponseParser, "feed", broken)
    result = post(app, "/v1/chat/completions", chat(True))
    assert result.status == 200 and result.raised is None
    assert result.body.endswith(b"data: [DONE]\n\n"), "the whole stream reached the client"
    view = telemetry.collect()
    assert view.total_count("http.server.request.duration") == 1
    assert view.one("http.server.streams").attributes["http.stream.outcome"] == "completed"
    assert not view.points(TOKENS), "no numbers from a parser that failed"
    assert len([r for r in caplog.records if "could not record" in r.getMessage()]) == 1


def test_estimates_can_be_switched_off(make_telemetry):
    """Without usage, output is counted from deltas and marked estimated; switched off, nothing is recorded."""
    from tests.llm.test_transcripts import HERE
    from tests.llm.test_transcripts_served import _replaying_app

    body = (HERE / "openai_chat_stream_no_usage.sse").read_bytes()
    for estimate, expected in ((True, [(3, True)]), (False, [])):
        telemetry = make_telemetry(estimate_output_tokens=estimate)
        app = telemetry.instrument(_replaying_app(body, "text/event-stream"))
        asyncio.run(call(app, "POST", "/v1/chat/completions", body=b'{"model":"m","stream":true}'))
        view = telemetry.collect()
        output = [(p.sum, p.attributes["gen_ai.usage.estimated"]) for p in view.points(TOKENS)
                  if p.attributes["gen_ai.token.type"] == "output"]
        assert output == expected
        assert view.one(DURATION).count == 1, "the request itself is measured either way"
