"""Google's generateContent shape beyond the transcripts: its paths, long answers and streams, bounds."""

from __future__ import annotations

import json

import pytest

from otel_llm_metrics.llm.endpoints import endpoint_for
from otel_llm_metrics.llm.exchange import LlmExchange
from otel_llm_metrics.llm.parse import WINDOW, ResponseParser
from otel_llm_metrics.llm.stats import GenAiStats

VERTEX = "/v1/projects/p-1/locations/europe-west4/publishers/google/models/"


@pytest.mark.parametrize(("path", "operation", "provider", "model"), [
    ("/v1beta/models/gemini-2.5-flash:generateContent", "generate_content", "gcp.gemini", "gemini-2.5-flash"),
    ("/v1/models/gemini-2.0-flash:streamGenerateContent", "generate_content", "gcp.gemini", "gemini-2.0-flash"),
    ("/google/v1beta/models/gemini-2.5-pro:streamGenerateContent/", "generate_content", "gcp.gemini",
     "gemini-2.5-pro"),  # behind a proxy's prefix, with a trailing slash
    ("/v1beta/tunedModels/my-tune-7:generateContent", "generate_content", "gcp.gemini", "my-tune-7"),
    ("/v1beta/models/gemini-embedding-001:embedContent", "embeddings", "gcp.gemini", "gemini-embedding-001"),
    ("/v1beta/models/text-embedding-004:batchEmbedContents", "embeddings", "gcp.gemini", "text-embedding-004"),
    (VERTEX + "gemini-2.5-flash:generateContent", "generate_content", "gcp.vertex_ai", "gemini-2.5-flash"),
    (VERTEX + "gemini-2.5-flash:streamGenerateContent", "generate_content", "gcp.vertex_ai", "gemini-2.5-flash"),
    ("/v1beta1/publishers/google/models/gemini-2.0-flash-001:generateContent", "generate_content", "gcp.vertex_ai",
     "gemini-2.0-flash-001"),  # Vertex AI express mode: no project or location
    ("/v1/projects/p-1/locations/us-central1/endpoints/4711:streamGenerateContent", "generate_content",
     "gcp.vertex_ai", "4711"),  # a tuned model's endpoint
    (VERTEX + "gemini-embedding-001:embedContent", "embeddings", "gcp.vertex_ai", "gemini-embedding-001"),
])
def test_gemini_paths_give_operation_provider_and_requested_model(path, operation, provider, model):
    endpoint = endpoint_for("POST", path)
    assert endpoint is not None
    assert (endpoint.operation, endpoint.provider_name, endpoint.model) == (operation, provider, model)
    exchange = LlmExchange(endpoint, GenAiStats(), None)
    assert (exchange.provider, exchange.request.model) == (provider, model)
    exchange.request.feed(b'{"contents": [{"role": "model", "parts": []}], "model": "from-the-body"}')
    assert exchange.request.model == model, "the path names the model; the body is not searched"
    assert LlmExchange(endpoint, GenAiStats(), "my-gateway").provider == "my-gateway", "the setting wins"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1beta/models/gemini-2.5-flash:generateContent"),
    ("POST", "/v1beta/models/gemini-2.5-flash:countTokens"),
    ("POST", "/v1beta/models/gemini-2.5-flash"),
    ("POST", "/v1beta/cachedContents"),
    ("POST", "/files/report:final"),
])
def test_other_google_calls_and_colons_are_not_llm_calls(method, path):
    assert endpoint_for(method, path) is None


def test_a_models_endpoint_is_built_once_and_the_cache_is_bounded():
    first = endpoint_for("POST", "/v1beta/models/gemini-2.5-flash:generateContent")
    assert endpoint_for("POST", "/v1beta/models/gemini-2.5-flash:generateContent") is first
    for i in range(1000):  # client-chosen model names cannot grow it without bound
        endpoint_for("POST", f"/v1beta/models/m-{i}:generateContent")
    from otel_llm_metrics.llm.endpoints import _gemini_endpoint

    assert _gemini_endpoint.cache_info().currsize <= 256
    long = endpoint_for("POST", "/v1beta/models/" + "m" * 5000 + ":generateContent")
    assert long is not None and long.model == "m" * 2048


def _event(text: str, usage: dict, finish: str | None = None, thought: bool = False) -> dict:
    part = {"text": text, **({"thought": True} if thought else {})}
    candidate = {"content": {"parts": [part], "role": "model"}, **({"finishReason": finish} if finish else {}),
                 "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"}


def _parse(chunks: list[bytes], path: str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
           content_type: bytes = b"text/event-stream") -> ResponseParser:
    parser = ResponseParser(endpoint_for("POST", path), content_type)
    for chunk in chunks:
        parser.feed(chunk)
    parser.finish()
    return parser


def test_a_long_sse_stream_keeps_bounded_events_and_reads_the_last_usage():
    events = [_event(f"word{i} ", {"promptTokenCount": 30, "candidatesTokenCount": i + 1, "thoughtsTokenCount": 64,
                                   "totalTokenCount": 95 + i}) for i in range(2000)]
    events[-1]["candidates"][0]["finishReason"] = "STOP"
    parser = ResponseParser(endpoint_for("POST", VERTEX + "gemini-2.5-flash:streamGenerateContent"), b"")
    for event in events:
        parser.feed(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
        assert parser._recent_size <= 2 * WINDOW + 400, "only the last events are kept"
    parser.finish()
    assert (parser.input_tokens, parser.output_tokens, parser.reasoning_tokens) == (30, 2000 + 64, 64)
    assert parser.content_events == 2000 and parser.finish_reason == "STOP" and not parser.error_event


def test_an_answer_larger_than_the_window_is_read_from_its_tail():
    text = "All work and no play. " * 3000  # 66 KB of answer
    document = _event(text, {"promptTokenCount": 5, "candidatesTokenCount": 15000, "totalTokenCount": 15005},
                      "MAX_TOKENS")
    body = json.dumps(document, indent=2).encode()
    assert len(body) > 4 * WINDOW
    parser = _parse([body[i:i + 4096] for i in range(0, len(body), 4096)],
                    "/v1beta/models/gemini-2.5-flash:generateContent", b"application/json")
    assert not parser.streamed_format
    assert (parser.input_tokens, parser.output_tokens, parser.reasoning_tokens) == (5, 15000, None)
    assert parser.response_model == "gemini-2.5-flash" and parser.finish_reason == "MAX_TOKENS"


def test_thoughts_function_calls_and_code_are_generated_parts_and_empty_text_is_not():
    event = _event("thinking", {"promptTokenCount": 3}, thought=True)
    event["candidates"][0]["content"]["parts"] += [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
        {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
        {"text": "", "thoughtSignature": "c2ln"}]
    parser = _parse([b"data: " + json.dumps(event).encode() + b"\n\n"])
    assert parser.content_events == 3 and parser.first_token_at > 0
    assert parser.output_tokens is None and parser.output_estimated, "no output count reported: estimated"


def test_an_array_stream_written_compactly_one_element_to_a_line():
    events = [_event("Hi", {"promptTokenCount": 4}), _event(" there", {"promptTokenCount": 4}),
              _event("", {"promptTokenCount": 4, "candidatesTokenCount": 2}, "STOP")]
    body = ("[" + "\n,".join(json.dumps(event, separators=(",", ":")) for event in events) + "]").encode()
    for size in (1, 7, len(body)):
        parser = _parse([body[i:i + size] for i in range(0, len(body), size)], content_type=b"application/json")
        assert parser.streamed_format and not parser.sse
        assert (parser.input_tokens, parser.output_tokens, parser.content_events) == (4, 2, 2), size
        assert parser.finish_reason == "STOP" and parser.response_model == "gemini-2.5-flash"


def test_a_prompt_blocked_before_any_output_records_input_only():
    document = {"promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "gemini-2.5-flash"}
    parser = _parse([json.dumps(document).encode()], "/v1beta/models/gemini-2.5-flash:generateContent",
                    b"application/json")
    assert (parser.input_tokens, parser.output_token_count(), parser.finish_reason) == (8, None, None)
    assert not parser.error_event


def test_an_array_body_is_still_one_document_for_the_other_dialects():
    parser = _parse([b'[{"choices": []}\n', b', {"usage": {"prompt_tokens": 1}}]'], "/v1/chat/completions",
                    b"application/json")
    assert not parser.streamed_format


@pytest.mark.parametrize("body", [b"[", b"[{", b'data: {"usageMetadata": {"promptTokenCount": 3', b"[]",
                                  b'data: {"candidates": 7}\n\n', b'data: {"functionCall": {"error": "none"}}\n\n',
                                  b'[{"usageMetadata": {"promptTokenCount": -4, "candidatesTokenCount": true}}]'])
def test_malformed_gemini_bodies_leave_numbers_unknown(body):
    for content_type in (b"text/event-stream", b"application/json"):
        parser = _parse([body], content_type=content_type)
        assert (parser.input_tokens, parser.output_tokens, parser.finish_reason) == (None, None, None)
        assert not parser.error_event
