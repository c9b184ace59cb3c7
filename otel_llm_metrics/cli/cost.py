"""What the LLM traffic cost, per provider and model: for the calls the app made (its spend) and for the
responses it served (what a proxy or gateway passes on to its callers). ``watch``, ``summary`` (``snapshot``)
and ``snapshot --json`` show it; ``doctor`` counts the models seen that have a price.

A model is its response model where the series has one, else its requested model: the one that was priced.
Tenants, operations and servers are added up. Calls whose model has no price are counted apart and shown as
"no price", never as $0. In a gateway one proxied call is both a call made and a response served: the two
sides are never added up.

The metric names are written out here (docs/cost.md, docs/catalogue.md) rather than taken from the catalogue,
so the CLI also reads an endpoint of another version; a unit test checks they match the catalogue's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from .. import catalogue as c
from .readings import Histograms, L, Samples, label

SIDES = ("made", "served")
COST = {"made": "gen_ai_client_cost_USD_total", "served": "gen_ai_server_cost_USD_total"}
UNPRICED_CALLS = {"made": "gen_ai_client_cost_unpriced_calls_total",
                  "served": "gen_ai_server_cost_unpriced_calls_total"}
UNPRICED_TOKENS = {"made": "gen_ai_client_cost_unpriced_tokens_total",
                   "served": "gen_ai_server_cost_unpriced_tokens_total"}
COUNTERS = (*COST.values(), *UNPRICED_CALLS.values(), *UNPRICED_TOKENS.values())
# The token histograms that say which models were seen (doctor): every call with usage, priced or not.
TOKENS = {"made": c.GEN_AI_CLIENT_TOKENS.prometheus_name, "served": c.GEN_AI_SERVER_TOKENS.prometheus_name}
TITLES = {"made": "Cost of the LLM calls this app made (its spend)",
          "served": "Cost of the LLM responses this app served (never add to the calls made)"}
JSON_KEYS = {"made": "calls_made", "served": "responses_served"}
NO_PRICE = "no price"
_RESPONSE_MODEL = c.prometheus_label(c.GEN_AI_RESPONSE_MODEL)


def model_of(key: tuple) -> tuple[str, str]:
    """(provider, model) of a series: the response model, else the requested one; "" where not reported."""
    return (label(key, L[c.GEN_AI_PROVIDER], ""),
            label(key, _RESPONSE_MODEL, "") or label(key, L[c.GEN_AI_REQUEST_MODEL], ""))


@dataclass
class ModelCost:
    """One provider and model, since start or over an interval (the counters' increase)."""

    provider: str  # "": not reported
    model: str
    usd: float | None  # None: no call of it was priced (no cost series), which is not $0
    unpriced_calls: float = 0.0  # calls whose model had no price: in no USD figure
    unpriced_tokens: dict[str, float] = field(default_factory=dict)  # by gen_ai.token.type


@dataclass
class SideCost:
    """The calls made, or the responses served: one entry per model, and their sum."""

    side: str  # "made" or "served"
    models: list[ModelCost]

    @property
    def usd(self) -> float | None:
        """What the priced calls cost; None when none was priced. Calls with no price are not in it."""
        priced = [m.usd for m in self.models if m.usd is not None]
        return math.fsum(priced) if priced else None

    @property
    def unpriced_calls(self) -> float:
        return sum(m.unpriced_calls for m in self.models)


def costs(samples: Samples) -> dict[str, SideCost]:
    """The sides that have cost series (of ``COUNTERS``, given by Prometheus name: totals or increases)."""
    out = {}
    for side in SIDES:
        usd, calls, tokens = (samples.get(name[side], {}) for name in (COST, UNPRICED_CALLS, UNPRICED_TOKENS))
        if not (usd or calls or tokens):
            continue
        spent: dict[tuple, float] = defaultdict(float)
        unpriced: dict[tuple, float] = defaultdict(float)
        by_type: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for key, value in usd.items():
            spent[model_of(key)] += value
        for key, value in calls.items():
            unpriced[model_of(key)] += value
        for key, value in tokens.items():
            by_type[model_of(key)][label(key, L[c.GEN_AI_TOKEN_TYPE])] += value
        out[side] = SideCost(side, [
            ModelCost(provider, model, spent.get((provider, model)), unpriced.get((provider, model), 0.0),
                      dict(sorted(by_type.get((provider, model), {}).items())))
            for provider, model in sorted(set(spent) | set(unpriced) | set(by_type))])
    return out


def price_coverage(samples: Samples, histograms: Histograms) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(models seen, those with no price), each a sorted list of (provider, model).

    Seen: in the token usage of either side (and in the cost series); priced: named by a cost series of either
    side, as its response or its requested model (a price does not depend on the side, and a call that did not
    say its response model is the one it asked for).
    """
    seen = {model_of(key) for side in SIDES for key in histograms.get(TOKENS[side], {})}
    priced = set()
    for side in SIDES:
        for key in samples.get(COST[side], {}):
            seen.add(model_of(key))
            provider = label(key, L[c.GEN_AI_PROVIDER], "")
            priced |= {(provider, label(key, name, "")) for name in (_RESPONSE_MODEL, L[c.GEN_AI_REQUEST_MODEL])}
        seen |= {model_of(key) for key in samples.get(UNPRICED_CALLS[side], {})}
    return sorted(seen), sorted(seen - priced)


def has_cost_series(samples: Samples) -> bool:
    """Whether the app reports cost at all (a cost or an unpriced series on either side)."""
    return any(samples.get(name) for name in COUNTERS)


def usd(value: float | None) -> str:
    """Money readably: $12.34 from a dollar up, else three significant digits ($0.000123); "-" unknown."""
    if value is None or math.isnan(value):
        return "-"
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) < 1e-6:
        return "<$0.000001"
    decimals = 2 - math.floor(math.log10(abs(value)))
    return f"${value:.{decimals}f}"


def calls(count: float) -> str:
    return f"{count:.0f} call" + ("" if round(count) == 1 else "s")


def who(provider: str, model: str) -> str:
    """A model as doctor lists it: ``gpt-4o (openai)``."""
    return (model or "(no model)") + (f" ({provider})" if provider else "")
