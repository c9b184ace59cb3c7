"""Parsing LLM traffic as it streams: right numbers, bounded memory, never an exception."""

from __future__ import annotations

import json
import sys

import pytest

from otel_llm_metrics.llm.endpoints import endpoint_for
from otel_llm_metrics.llm.parse import WINDOW, RequestModel, ResponseParser

CHAT = endpoint_for("POST", "/v1/chat/completions")
SSE = b"text/event-stream"


def sse(payload: dict, compact: bool = True) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    return b"data: " + json.dumps(payload, separators=separators, ensure_ascii=False).encode() + b"\n\n"


def chat_stream(tokens: int = 5, usage: bool = True, compact: bool = True, text: str = "tok ") -> list[bytes]:
    base = {"id": "c1", "object": "chat.completion.chunk", "model": "served-model"}
    events = [sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None}], "usage": None}, compact)]
    events += [sse({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                    "usage": None}, compact) for _ in range(tokens)]
    events.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
                      compact))
    if usage:
        events.append(sse({**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": tokens,
                                                            "total_tokens": 11 + tokens}}, compact))
    events.append(b"data: [DONE]\n\n")
    return events


def parse(chunks: list[bytes], endpoint=CHAT, content_type: bytes = SSE) -> ResponseParser:
    parser = ResponseParser(endpoint, content_type)
    for chunk in chunks:
        parser.feed(chunk)
    parser.finish()
    return parser


@pytest.mark.parametrize("compact", [True, False])
def test_openai_stream_with_usage(compact):
    parser = parse(chat_stream(7, compact=compact))
    assert (parser.input_tokens, parser.output_tokens) == (11, 7)
    assert parser.output_token_count() == 7 and not parser.output_estimated
    assert parser.content_events == 7, "the role-only first chunk is not generated content"
    assert parser.response_model == "served-model" and parser.finish_reason == "stop"


def test_without_usage_output_is_counted_from_deltas_and_marked_estimated():
    parser = parse(chat_stream(9, usage=False))
    assert parser.input_tokens is None
    assert parser.output_token_count() == 9 and parser.output_estimated


def test_role_only_first_chunk_does_not_start_the_first_token_clock():
    parser = ResponseParser(CHAT, SSE)
    events = chat_stream(2)
    parser.feed(events[0])
    assert parser.first_token_at == 0.0
    parser.feed(events[1])
    assert parser.first_token_at > 0


@pytest.mark.parametrize("size", [1, 3, 7, 64])
def test_chunks_split_mid_line_and_mid_utf8_give_the_same_numbers(size):
    raw = b"".join(chat_stream(12, text="caf\u00e9 \u6f22 "))
    assert any(byte >= 0x80 for byte in raw)
    parser = parse([raw[i:i + size] for i in range(0, len(raw), size)])
    assert (parser.input_tokens, parser.output_tokens, parser.content_events) == (11, 12, 12)


def test_whole_stream_in_one_message():
    parser = parse([b"".join(chat_stream(4))])
    assert (parser.input_tokens, parser.output_tokens, parser.finish_reason) == (11, 4, "stop")


@pytest.mark.parametrize("compact", [True, False])
def test_a_relayed_batch_of_many_events_in_one_message_reads_the_rare_ones_in_order(compact):
    """A proxy that relays a hundred events per write: only the events that carry a finish reason or usage are
    read (every event here names both keys, as null), and a later one has the last word."""
    events = chat_stream(100, compact=compact)
    more = sse({"model": "served-model", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 101}},
               compact)
    for batches in ([b"".join(events)], [b"".join(events[:60]), b"".join(events[60:-1]) + more + events[-1]]):
        parser = parse(batches)
        assert (parser.input_tokens, parser.output_tokens, parser.content_events) == (11, 101 if len(batches) > 1
                                                                                        else 100, 100)
        assert parser.finish_reason == "stop" and not parser.output_estimated


def test_usage_spread_over_the_data_lines_of_one_sse_event_is_read_whole():
    """SSE lets one event's data run over several ``data:`` lines: a usage object that goes on in the next
    line is read from the whole event, not from its lines."""
    events = chat_stream(3, usage=False)
    spread = (b'data: {"model":"served-model","choices":[],"usage":{"prompt_tokens":11,\ndata: '
              b'"completion_tokens":3}}\n\n')
    for chunks in ([*events[:-1], spread, events[-1]], [b"".join([*events[:-1], spread, events[-1]])]):
        parser = parse(chunks)
        assert (parser.input_tokens, parser.output_tokens, parser.finish_reason) == (11, 3, "stop"), chunks


@pytest.mark.parametrize("content_type", [SSE, b"text/plain"])
@pytest.mark.parametrize("compact", [True, False])
def test_a_last_content_event_that_also_ends_the_answer(content_type, compact):
    """vLLM's shape: the last token's delta carries the finish reason, every event the usage so far."""
    def event(text: str, finish: str | None, done: int) -> bytes:
        return sse({"model": "served-model", "choices": [{"index": 0, "delta": {"content": text},
                                                          "finish_reason": finish}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": done, "total_tokens": 11 + done}}, compact)

    events = [event("tok ", None, 1), event("tok ", None, 2), event("end", "stop", 3), b"data: [DONE]\n\n"]
    for chunks in (events, [b"".join(events[:2]), *events[2:]], events[:-1]):
        parser = parse(chunks, content_type=content_type)
        assert (parser.content_events, parser.first_token_at > 0) == (3, True)
        assert (parser.finish_reason, parser.input_tokens, parser.output_tokens) == ("stop", 11, 3)
        assert parser.answer_ended and not parser.output_estimated
    totals = sse({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}}, compact)
    parser = parse([*events[:-1], totals, events[-1]], content_type=content_type)
    assert (parser.finish_reason, parser.output_tokens) == ("stop", 4), "a later usage event has the last word"


def test_truncated_lines_and_invalid_json_are_skipped_not_raised():
    events = chat_stream(3)
    broken = [events[0], b'data: {"choices":[{"delta":{"content":"x', b"\n\n", b"data: {not json}\n\n",
              b'data: {"usage":{"prompt_tokens":', b"oops}}\n\n", *events[1:4]]
    parser = parse(broken)
    assert parser.input_tokens is None, "a usage object that does not parse is not a number"
    assert parser.content_events >= 3


def test_upstream_that_never_sends_done():
    parser = parse(chat_stream(5)[:-1])
    assert parser.output_tokens == 5


@pytest.mark.parametrize("usage", [{"prompt_tokens": -4, "completion_tokens": 3},
                                   {"prompt_tokens": 10**12, "completion_tokens": True},
                                   {"prompt_tokens": "12", "completion_tokens": 1.5}])
def test_negative_or_absurd_usage_is_dropped(usage):
    parser = parse([sse({"choices": [], "usage": usage})])
    assert parser.input_tokens is None
    assert parser.output_tokens is None or parser.output_tokens == 3


def test_an_endless_line_gives_up_with_bounded_memory():
    parser = ResponseParser(CHAT, SSE)
    piece = b"x" * (1 << 20)
    for _ in range(50):  # 50 MB without a newline
        parser.feed(piece)
    assert parser.gave_up
    assert sys.getsizeof(parser._partial) < 1 << 16


def test_fifty_megabyte_json_body_keeps_only_its_windows():
    endpoint = endpoint_for("POST", "/v1/embeddings")
    parser = ResponseParser(endpoint, b"application/json")
    parser.feed(b'{"object":"list","model":"embedder","data":[')
    row = b'{"object":"embedding","embedding":[' + b"0.1," * 250 + b'0.1]},'
    for _ in range((50 << 20) // len(row)):
        parser.feed(row)
        assert len(parser._head) <= WINDOW and len(parser._tail) <= WINDOW
    parser.feed(b'{"embedding":[0]}],"usage":{"prompt_tokens":42,"total_tokens":42}}')
    parser.finish()
    assert parser.input_tokens == 42 and parser.response_model == "embedder"


def test_non_streamed_chat_json():
    document = {"id": "c", "object": "chat.completion", "model": "m-2024",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19}}
    parser = parse([json.dumps(document).encode()], content_type=b"application/json")
    assert (parser.input_tokens, parser.output_tokens) == (3, 16)
    assert parser.response_model == "m-2024" and parser.finish_reason == "length"
    assert not parser.output_estimated


def test_ollama_ndjson_stream_and_single_object():
    endpoint = endpoint_for("POST", "/api/chat")
    lines = [json.dumps({"model": "llama3", "message": {"role": "assistant", "content": f"w{i} "},
                         "done": False}).encode() + b"\n" for i in range(6)]
    lines.append(json.dumps({"model": "llama3", "message": {"role": "assistant", "content": ""}, "done": True,
                             "done_reason": "stop", "prompt_eval_count": 26, "eval_count": 6}).encode() + b"\n")
    parser = parse(lines, endpoint, b"application/x-ndjson")
    assert (parser.input_tokens, parser.output_tokens, parser.content_events) == (26, 6, 6)
    assert parser.finish_reason == "stop" and parser.response_model == "llama3" and parser.done
    single = parse([lines[-1]], endpoint_for("POST", "/api/generate"), b"application/json")
    assert (single.input_tokens, single.output_tokens) == (26, 6)


def test_request_model_anywhere_in_the_body():
    body = json.dumps({"messages": [{"role": "user", "content": 'say "model": "no" ' * 3000}],
                       "tools": [{"parameters": {"properties": {"model": {"type": "string"}}}}],
                       "model": "gpt-4o-mini"}).encode()
    for size in (1, 5, 4096, len(body)):
        finder = RequestModel()
        for i in range(0, len(body), size):
            finder.feed(body[i:i + size])
        assert finder.model == "gpt-4o-mini", size


def test_request_without_a_model():
    finder = RequestModel()
    finder.feed(b'{"messages": []}')
    assert finder.model is None


def test_a_stream_abandoned_after_content_only_chunks_still_has_its_model():
    parser = ResponseParser(CHAT, SSE)
    for event in chat_stream(5)[1:4]:  # no role chunk, no final chunks: the client left
        parser.feed(event)
    parser.finish()
    assert parser.response_model == "served-model" and parser.content_events == 3


@pytest.mark.parametrize("split", [1, 700, 2100, 3000])
def test_a_request_model_longer_than_any_bound_is_cut_not_dropped(split):
    from otel_llm_metrics.llm.stats import MAX_VALUE_LENGTH, ValueLimiter

    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "model": "m" * 5000}).encode()
    request = RequestModel()
    for part in (body[:split], body[split:]):
        request.feed(part)
    assert request.model is not None and request.model.startswith("mmm")
    assert ValueLimiter(10)(request.model) == "m" * MAX_VALUE_LENGTH


@pytest.mark.parametrize("split", range(1, 40))
def test_a_request_model_split_anywhere_is_found_whole(split):
    body = b'{"stream":true,"model":"llama3.1:8b-instruct-q4_K_M","messages":[]}'
    request = RequestModel()
    request.feed(body[:split])
    request.feed(body[split:])
    assert request.model == "llama3.1:8b-instruct-q4_K_M"
