"""An answer's headers read the same whether they come as pairs (aiohttp, botocore) or as httpx's own triples."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from otel_llm_metrics.client import headers
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


def test_answers_with_the_same_names_each_read_their_own_values():
    """The layout of a list of names is remembered, never its values."""
    names = [b"date", b"content-type", b"x-ratelimit-remaining-requests", b"retry-after"]
    first = Answer(list(zip(names, [b"d", b"application/json", b"10", b"3"], strict=True)))
    second = Answer(tuple(zip(names, [b"d", b"text/event-stream", b"9", b"4"], strict=True)))
    third = Answer(iter(zip(names, [b"d", b"TEXT/PLAIN", b"8", b"5"], strict=True)))  # any iterable of items
    assert [_read(a) for a in (first, second, third)] == [
        (b"application/json", False, [("requests", False, 10)], 3.0),
        (b"text/event-stream", False, [("requests", False, 9)], 4.0),
        (b"text/plain", False, [("requests", False, 8)], 5.0)]


@pytest.mark.parametrize("value", [b"-5", b"12ms", b"", b"1e3", b"10000000000000000000", b"0x10"])
def test_a_limit_that_is_no_sane_whole_number_is_left_out(value):
    answer = Answer([(b"x-ratelimit-limit-tokens", value), (b"x-ratelimit-limit-requests", b" 0 ")])
    assert _read(answer)[2] == [("requests", True, 0)]


def test_remembered_layouts_are_bounded_and_later_ones_still_read(monkeypatch):
    monkeypatch.setattr(headers, "_LAYOUTS", {})
    for n in range(headers.MAX_LAYOUTS + 20):
        answer = Answer([(b"x-custom-%d" % n, b"1"), (b"Anthropic-Ratelimit-Tokens-Remaining", b"%d" % n)])
        assert _read(answer)[2] == [("tokens", False, n)]
    assert len(headers._LAYOUTS) == headers.MAX_LAYOUTS
