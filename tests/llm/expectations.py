"""What a transcript's truth means for the token series, for the served side and the calls made alike."""

from __future__ import annotations

SPLIT_ATTRIBUTES = ("gen_ai.token.cache", "gen_ai.token.phase")  # in no released convention: never emitted


def assert_tokens(points: list, truth: dict) -> None:
    """``points`` of a token usage histogram carry exactly the truth's totals, one observation per type and call,
    cached tokens inside input and reasoning tokens inside output (the released conventions' meaning)."""
    sums: dict[str, int] = {}
    counts: dict[str, int] = {}
    for point in points:
        kind = point.attributes["gen_ai.token.type"]
        sums[kind] = sums.get(kind, 0) + point.sum
        counts[kind] = counts.get(kind, 0) + point.count
        assert not set(SPLIT_ATTRIBUTES) & set(point.attributes), point.attributes
        assert point.attributes.get("gen_ai.response.model") == truth["model"]
        if kind == "input":  # read from the answer, never estimated (calls made leave the attribute off)
            assert point.attributes.get("gen_ai.usage.estimated") in (None, False), point.attributes
    assert sums == {kind: truth[kind] for kind in ("input", "output") if truth[kind] is not None}
    assert set(counts.values()) <= {1}, f"one observation per reported total: {counts}"
