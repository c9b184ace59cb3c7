"""An answer's headers read the same whether they come as pairs (aiohttp, botocore) or as httpx's own triples."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from otel_llm_metrics.client.headers import Answer

SENT = [("Date", "Mon, 30 Nov 2026 10:00:00 GMT"), ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Content-Encoding", "br"), ("X-RateLimit-Remaining-Requests", "9999"),
        ("x-ratelimit-limit-tokens", "30000000"), ("Anthropic-Ratelimit-Output-Tokens-Remaining", " 42 "),
        ("x-ratelimit-remaining-tokens", "12ms"), ("Retry-After", "7")]


def _read(answer: Answer) -> tuple:
    limits = sorted((*kind, value) for kind, value in answer.limits or [])
    return answer.content_type, answer.encoded, limits, answer.retry_after


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_httpx_triples_read_as_pairs(module):
    headers = module.Headers(SENT)
    pairs = [(name.encode(), value.encode()) for name, value in SENT]
    assert _read(Answer(headers._list)) == _read(Answer(pairs)) == (
        b"text/event-stream; charset=utf-8", True,
        [("output_tokens", False, 42), ("requests", False, 9999), ("tokens", True, 30000000)], 7.0)


def test_identity_encoding_and_no_wanted_header():
    answer = Answer([(b"Content-Encoding", b" Identity"), (b"X-Request-Id", b"req_1")])
    assert _read(answer) == (b"", False, [], None)
