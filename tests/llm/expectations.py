"""What a transcript's truth means for the token series, for the served side and the calls made alike."""

from __future__ import annotations


def assert_tokens(points: list, truth: dict) -> None:
    """``points`` of a token usage histogram carry exactly the truth's totals and its cache/reasoning split."""
    sums: dict[str, int] = {}
    details: dict[tuple, int] = {}
    for point in points:
        kind = point.attributes["gen_ai.token.type"]
        sums[kind] = sums.get(kind, 0) + point.sum
        for detail in ("gen_ai.token.cache", "gen_ai.token.phase"):
            if detail in point.attributes:
                details[(detail, point.attributes[detail])] = point.sum
        assert point.attributes.get("gen_ai.response.model") == truth["model"]
    assert sums == {kind: truth[kind] for kind in ("input", "output") if truth[kind] is not None}
    if truth["cache_read"] is not None:
        assert details.get(("gen_ai.token.cache", "read"), 0) == truth["cache_read"]
        assert details.get(("gen_ai.token.cache", "creation"), 0) == (truth["cache_creation"] or 0)
    if truth["reasoning"]:
        assert details[("gen_ai.token.phase", "reasoning")] == truth["reasoning"]
        assert details.get(("gen_ai.token.phase", "response"), 0) == truth["output"] - truth["reasoning"]
