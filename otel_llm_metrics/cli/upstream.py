"""The LLM calls an app makes (measured at its HTTP client), grouped per provider and requested model, and the
app's own overhead per route: what ``watch``, ``snapshot`` and ``record`` show next to the requests served.

The same grouping serves totals since start (a parsed exposition) and one interval (bucket and counter deltas):
the caller hands in the series, by Prometheus name, that it wants counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .. import catalogue as c
from .readings import HistogramData, Histograms, L, Samples, label, merged, per_route

HISTOGRAMS = (c.GEN_AI_CLIENT_DURATION, c.GEN_AI_CLIENT_TTFC, c.GEN_AI_CLIENT_TOKENS)
COUNTERS = (c.GEN_AI_CLIENT_ATTEMPTS,)
GAUGES = (c.GEN_AI_CLIENT_RATE_LIMIT_REMAINING, c.GEN_AI_CLIENT_RATE_LIMIT)
OVERHEADS = (c.UPSTREAM_OVERHEAD, c.FIRST_TOKEN_OVERHEAD)


@dataclass
class UpstreamCalls:
    """One provider and requested model: counts (since start, or over an interval) and timings."""

    provider: str  # "": not reported
    model: str  # the requested model
    calls: float  # operations, retries inside them not counted
    failed: float  # operations that ended with an error.type
    attempts: float | None  # None: no attempts reported (calls measured from spans)
    errors: dict[str, float]  # failed attempts by error.type ("429", "timeout", ...)
    input_tokens: float | None  # None: nobody reported input tokens
    output_tokens: float | None
    duration: HistogramData
    first_chunk: HistogramData
    rate_limits: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # resource: left, limit

    @property
    def retries(self) -> float | None:
        """Attempts beyond the first of each call: what retrying cost upstream."""
        return None if self.attempts is None else max(0.0, self.attempts - self.calls)


def _group(key: tuple) -> tuple[str, str]:
    return label(key, L[c.GEN_AI_PROVIDER], ""), label(key, L[c.GEN_AI_REQUEST_MODEL], "")


def _of(series: dict, group: tuple[str, str]) -> dict:
    return {key: value for key, value in series.items() if _group(key) == group}


def upstream_calls(histograms: Histograms, samples: Samples) -> list[UpstreamCalls]:
    """Per (provider, requested model), from the series of ``HISTOGRAMS``, ``COUNTERS`` and ``GAUGES`` given.

    A rate limit is the lowest remaining (and the highest limit) any worker or instance reports: they share
    the provider's quota, so adding them up would overstate what is left.
    """
    durations, first_chunks, tokens = (histograms.get(s.prometheus_name, {}) for s in HISTOGRAMS)
    attempts = samples.get(c.GEN_AI_CLIENT_ATTEMPTS.prometheus_name, {})
    remaining, limits = (samples.get(s.prometheus_name, {}) for s in GAUGES)
    groups = {_group(k) for series in (durations, tokens, attempts, remaining, limits) for k in series}
    found = []
    for group in sorted(groups):
        of_group = {L[c.GEN_AI_PROVIDER]: group[0], L[c.GEN_AI_REQUEST_MODEL]: group[1]}
        mine, tried = _of(durations, group), _of(attempts, group)
        duration = merged(mine)
        inputs = merged(tokens, **of_group, **{L[c.GEN_AI_TOKEN_TYPE]: "input"})
        outputs = merged(tokens, **of_group, **{L[c.GEN_AI_TOKEN_TYPE]: "output"})
        errors: dict[str, float] = defaultdict(float)
        for key, value in tried.items():
            if value and label(key, L[c.ERROR_TYPE], ""):  # a type seen before but not in this interval: none
                errors[label(key, L[c.ERROR_TYPE])] += value
        found.append(UpstreamCalls(
            group[0], group[1], duration.count, sum(d.count for k, d in mine.items() if label(k, L[c.ERROR_TYPE], "")),
            sum(tried.values()) if tried else None, dict(sorted(errors.items())),
            inputs.total if inputs.count else None, outputs.total if outputs.count else None,
            duration, merged(first_chunks, **of_group), _rate_limits(_of(remaining, group), _of(limits, group))))
    return found


def _rate_limits(remaining: dict[tuple, float], limits: dict[tuple, float]) -> dict[str, tuple]:
    resource = L[c.RATE_LIMIT_RESOURCE]
    out: dict[str, tuple[float | None, float | None]] = {}
    for name in sorted({label(k, resource) for k in remaining} | {label(k, resource) for k in limits}):
        left = [v for k, v in remaining.items() if label(k, resource) == name]
        most = [v for k, v in limits.items() if label(k, resource) == name]
        out[name] = (min(left) if left else None, max(most) if most else None)
    return out


def overheads(histograms: Histograms) -> tuple[dict[tuple[str, str], HistogramData], ...]:
    """(upstream overhead, first-token overhead) by (method, route), from the series of ``OVERHEADS`` given."""
    return tuple(per_route(histograms.get(spec.prometheus_name, {})) for spec in OVERHEADS)
