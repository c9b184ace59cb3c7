"""Wire transcripts written from the providers' public API references, each with its ground truth,
parsed under every content type a proxy might send and split at every byte boundary.

A transcript is the response body exactly as it crosses the wire (``tests/llm/transcripts/``):
OpenAI Chat Completions (with the quirks of Azure, vLLM/DeepSeek reasoning, tool calls, n > 1, an
error inside a 200), the OpenAI Responses API, Anthropic Messages (caching, thinking, tool use, an
error event), Ollama's chat and generate (with thinking), Google's generateContent on the Gemini API
and Vertex AI (SSE, the JSON-array stream, thoughts, cached content, MAX_TOKENS, a 429, the raw
error Google appends to a 200 stream, embeddings), and a hand-written proxy's SSE framing.
``truth.json`` says what each contains: tokens (cache and reasoning details too), model, finish
reason, errors, whether output is estimated, how many content deltas it carries (text, reasoning and
tool calls: what an estimate counts), and the first generated content, whose event's end is where
the first-token clock must stop; and for the served test, the operation, provider and the requested
model when the path names it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import otel_llm_metrics.llm.parse as parse_module
from otel_llm_metrics.llm.endpoints import endpoint_for
from otel_llm_metrics.llm.parse import ResponseParser

HERE = Path(__file__).parent / "transcripts"
TRUTH = json.loads((HERE / "truth.json").read_text())
# The declared type, then what hand-written proxies send instead (None: no Content-Type at all).
DISGUISES = [None, "text/plain", "text/plain; charset=utf-8", "application/octet-stream", "application/json", ""]


def _body(name: str) -> bytes:
    return (HERE / name).read_bytes()


def _first_line_end(body: bytes, first_content: str | None) -> int | None:
    """The offset just past the event that carries the first generated content: its line (NDJSON),
    or the blank line that ends it (SSE, where an event is dispatched at the blank line)."""
    if first_content is None:
        return None
    at = body.index(json.dumps(first_content)[1:-1].encode())
    if body.lstrip().startswith((b"data:", b":", b"event:", b"id:", b"retry:")):
        ends = [end + len(mark) for mark in (b"\n\n", b"\n\r\n") if (end := body.find(mark, at)) != -1]
        return min(ends)
    return body.index(b"\n", at) + 1


def _parse(name: str, chunks: list[bytes], content_type: str | None, monkeypatch) -> tuple:
    """Feed ``chunks`` with a clock that reads "bytes received so far"; return what was understood."""
    truth = TRUTH[name]
    received = [0.0]
    monkeypatch.setattr(parse_module, "perf_counter", lambda: received[0])
    parser = ResponseParser(endpoint_for("POST", truth["path"]), (content_type or "").encode())
    for chunk in chunks:
        received[0] += len(chunk)
        parser.feed(chunk)
    parser.finish()
    return (parser.input_tokens, parser.output_token_count(), parser.output_estimated, parser.response_model,
            parser.finish_reason, parser.first_token_at or None, parser.cache_read_tokens,
            parser.cache_creation_tokens, parser.reasoning_tokens, parser.error_event, parser.content_events)


def _expected(name: str, chunks: list[bytes]) -> tuple:
    """The ground truth, with the first-token clock at the end of the chunk that completes its line."""
    truth = TRUTH[name]
    line_end = _first_line_end(b"".join(chunks), truth["first_content"])
    stamp = None
    if line_end is not None:
        received = 0
        for chunk in chunks:
            received += len(chunk)
            if received >= line_end:
                stamp = float(received)
                break
    return (truth["input"], truth["output"], truth["estimated"], truth["model"], truth["finish"], stamp,
            truth["cache_read"], truth["cache_creation"], truth["reasoning"], truth["error"], truth["deltas"])


def _content_types(name: str) -> list[str | None]:
    return [TRUTH[name]["content_type"], *DISGUISES]


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_every_transcript_has_its_ground_truth(name):
    assert (HERE / name).exists()
    truth = TRUTH[name]
    assert endpoint_for("POST", truth["path"]) is not None
    if truth["first_content"] is not None:
        assert _first_line_end(_body(name), truth["first_content"]) < len(_body(name))


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_every_split_into_two_messages_under_every_content_type(name, monkeypatch):
    body = _body(name)
    for content_type in _content_types(name):
        for cut in range(len(body) + 1):
            chunks = [part for part in (body[:cut], body[cut:]) if part]
            got = _parse(name, chunks, content_type, monkeypatch)
            assert got == _expected(name, chunks), f"{name} as {content_type!r}, cut at byte {cut}"


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_byte_by_byte_and_random_chunkings(name, monkeypatch):
    body = _body(name)
    chance = random.Random(name)  # the same chunkings on every run
    chunkings = [[body[i:i + 1] for i in range(len(body))], [body]]
    for _ in range(200):
        cuts = sorted(chance.sample(range(1, len(body)), chance.randint(2, 12)))
        chunkings.append([body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)])
    for content_type in _content_types(name):
        for chunks in chunkings:
            assert _parse(name, chunks, content_type, monkeypatch) == _expected(name, chunks), (
                f"{name} as {content_type!r} in {len(chunks)} chunks")
