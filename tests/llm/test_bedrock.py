"""The Bedrock dialect: paths, event-stream frames (every byte split, bad CRCs, truncation, exceptions) and the
answers of Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream, from frames built by AWS's
published format (``bedrock_frames``; botocore's own decoder reads them too)."""

from __future__ import annotations

import json
import struct

import pytest

from otel_llm_metrics.llm import eventstream
from otel_llm_metrics.llm.bedrock import BedrockReader
from otel_llm_metrics.llm.endpoints import endpoint_for
from tests.llm.bedrock_frames import (
    ANTHROPIC_MESSAGE,
    CONVERSE_ANSWER,
    NOVA_MESSAGE,
    anthropic_invoke_stream,
    chunk,
    converse_stream,
    event,
    exception,
    frame,
    nova_invoke_stream,
)

STREAM = [(b"content-type", b"application/vnd.amazon.eventstream")]
JSON = [(b"content-type", b"application/json")]
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


def _endpoint(action: str, model: str = HAIKU):
    from urllib.parse import quote
    return endpoint_for("POST", f"/model/{quote(model, safe='')}/{action}")


def _read(action: str, body: bytes, headers=STREAM, pieces: list[bytes] | None = None, model: str = HAIKU):
    reader = BedrockReader(_endpoint(action, model), headers)
    for piece in pieces if pieces is not None else [body]:
        reader.feed(piece)
    reader.finish()
    return reader


def _facts(reader: BedrockReader) -> tuple:
    return (reader.input_tokens, reader.output_token_count(), reader.cache_read_tokens, reader.cache_creation_tokens,
            reader.finish_reason, reader.content_events, reader.error_type, reader.answer_ended,
            reader.response_model)


# -- paths -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "model", "operation"), [
    ("/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse", HAIKU, "chat"),
    ("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream", "anthropic.claude-3-haiku-20240307-v1:0",
     "chat"),
    ("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/invoke",
     "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0", "chat"),
    # an ASGI server hands the path decoded: the ARN's slash is in it
    ("/model/arn:aws:bedrock:us-east-1:123456789012:foundation-model/amazon.titan-text-express-v1/invoke",
     "arn:aws:bedrock:us-east-1:123456789012:foundation-model/amazon.titan-text-express-v1", "text_completion"),
    ("/model/amazon.titan-embed-text-v2%3A0/invoke", "amazon.titan-embed-text-v2:0", "embeddings"),
    ("/model/cohere.embed-english-v3/invoke", "cohere.embed-english-v3", "embeddings"),
    ("/model/meta.llama3-1-8b-instruct-v1%3A0/invoke-with-response-stream", "meta.llama3-1-8b-instruct-v1:0", "chat"),
    ("/model/amazon.titan-embed-text-v2%3A0/converse", "amazon.titan-embed-text-v2:0", "chat"),
])
def test_paths_name_the_model_and_the_operation(path, model, operation):
    endpoint = endpoint_for("POST", path)
    assert (endpoint.model, endpoint.operation, endpoint.provider_name) == (model, operation, "aws.bedrock")


@pytest.mark.parametrize("path", ["/model//converse", "/model/x/converse-streams", "/models/x/converse",
                                  "/model/x/invoke/extra", "/x/converse"])
def test_other_paths_are_not_bedrock(path):
    assert endpoint_for("POST", path) is None
    assert endpoint_for("GET", "/model/x/converse") is None


# -- the frame decoder -------------------------------------------------------------------------------
def _decode(pieces: list[bytes]) -> tuple[list, str | None]:
    seen = []
    decoder = eventstream.FrameDecoder(lambda kind, data, start, end: seen.append((kind, data[start:end])))
    for piece in pieces:
        decoder.feed(piece)
    return seen, decoder.finish()


def test_frames_at_every_byte_split_and_byte_by_byte():
    body = converse_stream() + exception("throttlingException")
    whole, error = _decode([body])
    assert error is None
    assert [kind for kind, _ in whole] == [("event", "messageStart")] + [("event", "contentBlockDelta")] * 3 + [
        ("event", "contentBlockStop"), ("event", "messageStop"), ("event", "metadata"),
        ("exception", "throttlingException")]
    assert json.loads(whole[-2][1])["usage"]["inputTokens"] == 9
    for cut in range(len(body) + 1):
        assert _decode([body[:cut], body[cut:]]) == (whole, None), cut
    assert _decode([body[i:i + 1] for i in range(len(body))]) == (whole, None)


def test_every_header_type_is_skipped_correctly():
    block = (bytes([3]) + b"one" + b"\x00" + bytes([3]) + b"two" + b"\x02\x7f" + bytes([5]) + b"three" + b"\x04"
             + b"\x00\x00\x00\x01" + bytes([4]) + b"four" + b"\x05" + bytes(8) + bytes([2]) + b"ts" + b"\x08"
             + bytes(8) + bytes([4]) + b"uuid" + b"\x09" + bytes(16) + bytes([3]) + b"raw" + b"\x06\x00\x02ab"
             + bytes([3]) + b"srt" + b"\x03\x00\x01")
    headers = eventstream.parse_headers(block + eventstream_header(":event-type", "metadata"))
    assert headers[":event-type"] == "metadata" and headers["one"] is True and headers["raw"] == b"ab"
    assert eventstream.parse_headers(b"\x03one\x0a") is None  # an unknown type
    assert eventstream.parse_headers(b"\x03one\x07\x00\x09ab") is None  # a value longer than the block


def eventstream_header(name: str, value: str) -> bytes:
    from tests.llm.bedrock_frames import header
    return header(name, value)


@pytest.mark.parametrize(("damage", "error"), [
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), eventstream.BAD_MESSAGE_CRC),
    (lambda f: f[:20] + bytes([f[20] ^ 1]) + f[21:], eventstream.BAD_MESSAGE_CRC),  # a header byte
    (lambda f: f[:8] + bytes([f[8] ^ 1]) + f[9:], eventstream.BAD_PRELUDE_CRC),
    (lambda f: struct.pack(">I", len(f) + 100) + f[4:], eventstream.BAD_PRELUDE_CRC),  # a length, CRC unfixed
])
def test_a_damaged_frame_stops_decoding_with_its_reason(damage, error):
    good = event("messageStart", {"role": "assistant"})
    bad = damage(event("contentBlockDelta", {"delta": {"text": "x"}}))
    seen, found = _decode([good + bad + good])
    assert found == error and len(seen) == 1
    reader = _read("converse-stream", good + bad + converse_stream())
    assert reader.error_type == "_OTHER" and reader.error_event and reader.content_events == 0


def test_impossible_lengths_are_rejected_even_with_a_valid_prelude_crc():
    import zlib
    for total, headers in ((8, 0), (20, 10), (eventstream.MAX_FRAME + 1, 0), (100, eventstream.MAX_HEADERS + 1)):
        prelude = struct.pack(">II", total, headers)
        seen, error = _decode([prelude + struct.pack(">I", zlib.crc32(prelude)) + bytes(32)])
        assert (seen, error) == ([], eventstream.BAD_LENGTH), (total, headers)


def test_a_truncated_stream_is_a_connection_error():
    body = converse_stream()
    seen, error = _decode([body[:-5]])
    assert error == eventstream.TRUNCATED and len(seen) == 6
    reader = _read("converse-stream", body[:-5])
    assert (reader.error_type, reader.content_events, reader.finish_reason, reader.input_tokens) == (
        "connection_error", 3, "end_turn", None)
    assert _read("converse-stream", body[:5]).error_type == "connection_error"  # inside the first prelude
    assert _read("converse-stream", b"").error_type is None


def test_a_handler_that_raises_loses_its_frame_only():
    calls = []

    def handler(kind, data, start, end):
        calls.append(kind[1])
        if kind[1] == "messageStop":
            raise ValueError("boom")

    decoder = eventstream.FrameDecoder(handler)
    decoder.feed(converse_stream())
    assert decoder.finish() is None and calls[-1] == "metadata"


# -- ConverseStream ------------------------------------------------------------------------------------
CONVERSE_STREAM_TRUTH = (9, 3, None, None, "end_turn", 3, None, True, None)


def test_converse_stream_at_every_byte_split():
    body = converse_stream()
    assert _facts(_read("converse-stream", body)) == CONVERSE_STREAM_TRUTH
    for cut in range(len(body) + 1):
        assert _facts(_read("converse-stream", body, pieces=[body[:cut], body[cut:]])) == CONVERSE_STREAM_TRUTH
    assert _facts(_read("converse-stream", body, pieces=[body[i:i + 3] for i in range(0, len(body), 3)])) == \
        CONVERSE_STREAM_TRUTH


def test_converse_stream_cache_tokens_count_in_the_input_and_first_content_is_timed():
    usage = {"inputTokens": 4, "outputTokens": 40, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 20,
             "totalTokens": 1064}
    body = converse_stream(deltas=5, usage=usage, stop="tool_use")
    reader = BedrockReader(_endpoint("converse-stream"), STREAM)
    two = len(event("messageStart", {"role": "assistant"})) + len(
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "word0 "}}))
    reader.feed(body[:two])
    assert reader.content_events == 1 and reader.first_token_at > 0
    first = reader.first_token_at
    reader.feed(body[two:])
    reader.finish()
    assert _facts(reader) == (1024, 40, 1000, 20, "tool_use", 5, None, True, None)
    assert reader.first_token_at == first and reader.streamed_format


def test_a_throttling_exception_inside_a_stream_is_the_error_type():
    body = event("messageStart", {"role": "assistant"}) + event("contentBlockDelta", {"delta": {"text": "a"}}) \
        + exception("throttlingException")
    reader = _read("converse-stream", body)
    assert (reader.error_type, reader.error_event, reader.answer_ended, reader.content_events) == (
        "throttlingException", True, True, 1)
    assert _read("converse-stream", exception("modelStreamErrorException")).error_type == "modelStreamErrorException"
    assert _read("converse-stream", exception("somethingNewException")).error_type == "_OTHER"
    error = frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "x"}, b"")
    assert _read("converse-stream", error).error_type == "_OTHER"


def test_no_usage_estimates_output_from_the_deltas():
    body = b"".join(event(name, payload) for name, payload in (
        ("messageStart", {"role": "assistant"}), ("contentBlockDelta", {"delta": {"text": "a"}}),
        ("contentBlockDelta", {"delta": {"reasoningContent": {"text": "b"}}}),
        ("contentBlockDelta", {"delta": {"toolUse": {"input": "{}"}}}), ("messageStop", {"stopReason": "end_turn"})))
    reader = _read("converse-stream", body)
    assert (reader.output_token_count(), reader.output_estimated, reader.input_tokens) == (3, True, None)
    reader = BedrockReader(_endpoint("converse-stream"), STREAM, estimate=False)
    reader.feed(body)
    reader.finish()
    assert reader.output_token_count() is None


def test_a_stream_without_a_content_type_is_sniffed():
    assert _facts(_read("converse-stream", converse_stream(), headers=[])) == CONVERSE_STREAM_TRUTH
    assert _read("converse-stream", json.dumps(CONVERSE_ANSWER).encode(), headers=[]).input_tokens == 7


# -- Converse and InvokeModel bodies --------------------------------------------------------------------
def test_converse_answer():
    body = json.dumps(CONVERSE_ANSWER).encode()
    assert _facts(_read("converse", body, JSON)) == (7, 4, None, None, "end_turn", 1, None, True, None)
    for cut in range(0, len(body) + 1, 7):
        assert _read("converse", body, JSON, [body[:cut], body[cut:]]).output_tokens == 4


def test_converse_answer_with_cache_tokens():
    answer = dict(CONVERSE_ANSWER, usage={"inputTokens": 4, "outputTokens": 403, "totalTokens": 1540,
                                          "cacheReadInputTokens": 0, "cacheWriteInputTokens": 1133})
    reader = _read("converse", json.dumps(answer).encode(), JSON)
    assert (reader.input_tokens, reader.cache_read_tokens, reader.cache_creation_tokens) == (1137, 0, 1133)


def test_invoke_anthropic_message():
    reader = _read("invoke", json.dumps(ANTHROPIC_MESSAGE).encode(), JSON)
    assert _facts(reader) == (15, 5, None, 2, "max_tokens", 1, None, True, "claude-3-5-haiku-20241022")


def test_invoke_nova_titan_llama_bodies():
    nova = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 21, "outputTokens": 8, "totalTokens": 29, "cacheReadInputTokenCount": 10,
                      "cacheWriteInputTokenCount": 0}}
    assert _facts(_read("invoke", json.dumps(nova).encode(), JSON, model="us.amazon.nova-lite-v1:0"))[:5] == (
        31, 8, 10, 0, "end_turn")
    titan = {"inputTextTokenCount": 6, "results": [{"tokenCount": 12, "outputText": "x", "completionReason": "FINISH"}]}
    assert _facts(_read("invoke", json.dumps(titan).encode(), JSON, model="amazon.titan-text-express-v1"))[:5] == (
        6, 12, None, None, "FINISH")
    embedding = {"embedding": [0.1] * 4, "inputTextTokenCount": 9}
    reader = _read("invoke", json.dumps(embedding).encode(), JSON, model="amazon.titan-embed-text-v2:0")
    assert (reader.input_tokens, reader.output_tokens) == (9, None)
    llama = {"generation": "Hi", "prompt_token_count": 17, "generation_token_count": 2, "stop_reason": "stop"}
    assert _facts(_read("invoke", json.dumps(llama).encode(), JSON, model="meta.llama3-1-8b-instruct-v1:0"))[:5] == (
        17, 2, None, None, "stop")


def test_invoke_without_usage_in_the_body_reads_bedrock_headers():
    mistral = {"outputs": [{"text": "hi", "stop_reason": "length"}]}
    headers = JSON + [(b"x-amzn-bedrock-input-token-count", b"30"), (b"x-amzn-bedrock-output-token-count", b"7"),
                      (b"x-amzn-bedrock-invocation-latency", b"250")]
    reader = _read("invoke", json.dumps(mistral).encode(), headers, model="mistral.mistral-7b-instruct-v0:2")
    assert (reader.input_tokens, reader.output_tokens, reader.finish_reason) == (30, 7, "length")
    # the body's own usage wins over the headers
    reader = _read("invoke", json.dumps(ANTHROPIC_MESSAGE).encode(), headers)
    assert (reader.input_tokens, reader.output_tokens) == (15, 5)


def test_bedrock_headers_in_any_case_are_the_last_source_of_tokens():
    """An HTTP/1.1 server sends ``X-Amzn-Bedrock-...`` as spelled, and the clients hand the names on as they came."""
    mistral = json.dumps({"outputs": [{"text": "hi", "stop_reason": "length"}]}).encode()
    headers = [(b"Content-Type", b"application/json"), (b"X-Amzn-Bedrock-Input-Token-Count", b"30"),
               (b"X-AMZN-BEDROCK-OUTPUT-TOKEN-COUNT", b" 7 "), (b"X-Amzn-Bedrock-Cache-Read-Input-Token-Count", b"4")]
    reader = _read("invoke", mistral, headers, model="mistral.mistral-7b-instruct-v0:2")
    assert (reader.input_tokens, reader.output_tokens, reader.cache_read_tokens, reader.content_events,
            reader.output_estimated, reader.streamed_format) == (34, 7, 4, 1, False, False)
    # without them the usage is unknown (a whole answer is one piece of content, no estimate of its tokens)
    reader = _read("invoke", mistral, JSON, model="mistral.mistral-7b-instruct-v0:2")
    assert (reader.input_tokens, reader.output_token_count(), reader.content_events) == (None, None, 1)
    # httpx keeps (name, lowercased name, value) triples, handed on as they are
    triples = [(name, name.lower(), value) for name, value in headers]
    reader = _read("invoke", mistral, triples, model="mistral.mistral-7b-instruct-v0:2")
    assert (reader.input_tokens, reader.output_tokens, reader.cache_read_tokens, reader.finish_reason) == (
        34, 7, 4, "length")
    # nonsense values are not counts
    bad = JSON + [(b"X-Amzn-Bedrock-Input-Token-Count", b"-3"), (b"X-Amzn-Bedrock-Output-Token-Count", b"9" * 12)]
    assert _read("invoke", mistral, bad, model="mistral.mistral-7b-instruct-v0:2").input_tokens is None


def test_a_large_invoke_answer_is_read_from_its_ends():
    large = {"embedding": [0.123456789] * 20000, "inputTextTokenCount": 8}
    body = json.dumps(large).encode()
    assert len(body) > 100_000
    reader = _read("invoke", body, JSON, [body[i:i + 4096] for i in range(0, len(body), 4096)],
                   model="amazon.titan-embed-text-v2:0")
    assert reader.input_tokens == 8
    message = dict(ANTHROPIC_MESSAGE, content=[{"type": "text", "text": "x" * 200_000}])
    assert _facts(_read("invoke", json.dumps(message).encode(), JSON))[:5] == (15, 5, None, 2, "max_tokens")


def test_an_error_answer_leaves_tokens_unknown():
    reader = _read("converse", b'{"message":"Too many requests, please wait before trying again."}', JSON)
    assert (reader.input_tokens, reader.output_token_count(), reader.finish_reason) == (None, None, None)
    assert _read("converse", b"not json", JSON).input_tokens is None


# -- InvokeModelWithResponseStream ------------------------------------------------------------------------
ANTHROPIC_TRUTH = (16, 6, 5, None, "end_turn", 2, None, True, "claude-3-5-haiku-20241022")


def test_invoke_stream_anthropic_at_every_byte_split():
    body = anthropic_invoke_stream()
    assert _facts(_read("invoke-with-response-stream", body)) == ANTHROPIC_TRUTH
    for cut in range(len(body) + 1):
        assert _facts(_read("invoke-with-response-stream", body, pieces=[body[:cut], body[cut:]])) == ANTHROPIC_TRUTH


NOVA_TRUTH = (20, 4, 6, 2, "end_turn", 3, None, True, None)  # 12 uncached + 6 read + 2 written


def test_invoke_stream_nova_at_every_byte_split():
    body = nova_invoke_stream()
    model = "us.amazon.nova-lite-v1:0"
    assert _facts(_read("invoke-with-response-stream", body, model=model)) == NOVA_TRUTH
    for cut in range(len(body) + 1):
        reader = _read("invoke-with-response-stream", body, pieces=[body[:cut], body[cut:]], model=model)
        assert _facts(reader) == NOVA_TRUTH, cut
    reader = _read("invoke-with-response-stream", body, pieces=[body[i:i + 1] for i in range(len(body))], model=model)
    assert _facts(reader) == NOVA_TRUTH and reader.first_token_at > 0


def test_invoke_nova_message_at_every_byte_split():
    body = json.dumps(NOVA_MESSAGE).encode()
    truth = (31, 8, 10, 0, "max_tokens", 1, None, True, None)
    for cut in range(len(body) + 1):
        assert _facts(_read("invoke", body, JSON, [body[:cut], body[cut:]], model="amazon.nova-pro-v1:0")) == truth


def test_invoke_stream_nova_llama_titan():
    nova = b"".join(chunk(document) for document in (
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "a"}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"text": "b"}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": {"inputTokens": 5, "outputTokens": 2}, "metrics": {}, "trace": {}},
         "amazon-bedrock-invocationMetrics": {"inputTokenCount": 5, "outputTokenCount": 2}}))
    assert _facts(_read("invoke-with-response-stream", nova, model="amazon.nova-micro-v1:0"))[:8] == (
        5, 2, None, None, "end_turn", 2, None, True)
    llama = b"".join(chunk(document) for document in (
        {"generation": "Hel", "prompt_token_count": 10, "generation_token_count": 1, "stop_reason": None},
        {"generation": "lo", "prompt_token_count": None, "generation_token_count": 2, "stop_reason": None},
        {"generation": "", "prompt_token_count": None, "generation_token_count": 3, "stop_reason": "stop",
         "amazon-bedrock-invocationMetrics": {"inputTokenCount": 10, "outputTokenCount": 3}}))
    assert _facts(_read("invoke-with-response-stream", llama, model="meta.llama3-1-8b-instruct-v1:0"))[:8] == (
        10, 3, None, None, "stop", 2, None, True)
    titan = b"".join(chunk(document) for document in (
        {"outputText": "Hi", "index": 0, "totalOutputTextTokenCount": 1, "completionReason": None,
         "inputTextTokenCount": 4},
        {"outputText": " you", "index": 0, "totalOutputTextTokenCount": 2, "completionReason": "FINISH",
         "inputTextTokenCount": 4, "amazon-bedrock-invocationMetrics": {"inputTokenCount": 4, "outputTokenCount": 2}}))
    assert _facts(_read("invoke-with-response-stream", titan, model="amazon.titan-text-express-v1"))[:8] == (
        4, 2, None, None, "FINISH", 2, None, True)


def test_invoke_stream_usage_from_invocation_metrics_alone():
    body = b"".join(chunk(document) for document in (
        {"type": "content_block_delta", "delta": {"text": "x"}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 1,
                                                                      "cacheReadInputTokenCount": 2}}))
    reader = _read("invoke-with-response-stream", body)
    assert (reader.input_tokens, reader.output_tokens, reader.cache_read_tokens, reader.answer_ended) == (
        5, 1, 2, True)


def test_invoke_stream_bad_chunks_are_skipped():
    body = event("chunk", {"bytes": "!!!not base64!!!"}) + event("chunk", {"nothing": 1}) + \
        event("chunk", {"bytes": "bm90IGpzb24gdXNhZ2U="}) + anthropic_invoke_stream()
    assert _facts(_read("invoke-with-response-stream", body)) == ANTHROPIC_TRUTH
