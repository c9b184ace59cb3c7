"""Reading metrics endpoints: fetch, parse, merge several, and the groupings every view shares.

Several URLs (one per worker or per instance) are merged: the same series from two endpoints is
summed, a peak takes the larger and a provider's rate limit left the lower. Percentiles come from
histogram buckets (``HistogramData``).
"""

from __future__ import annotations

import math
import operator
import time
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from .. import catalogue as c

# Prometheus label names of the attributes read here, as the OTel exporter writes them.
L = {attribute: c.prometheus_label(attribute) for attribute in (
    c.METHOD, c.ROUTE, c.STATUS, c.ERROR_TYPE, c.STREAM_OUTCOME, c.GEN_AI_OPERATION, c.GEN_AI_REQUEST_MODEL,
    c.GEN_AI_TOKEN_TYPE, c.GEN_AI_ESTIMATED, c.POOL_NAME, c.POOL_STATE, c.CACHE_NAME, c.LIMITER_NAME,
    c.GEN_AI_PROVIDER, c.RATE_LIMIT_RESOURCE)}
DEFAULT_URL = "http://127.0.0.1:9464/metrics"
Samples = dict[str, dict[tuple, float]]
Histograms = dict[str, dict[tuple, "HistogramData"]]
# Gauges that two endpoints must not add up (a peak is the larger): a provider's quota is shared, so what is
# left of it is the lowest any instance saw, and its limit the one they all state.
_MERGE = {c.GEN_AI_CLIENT_RATE_LIMIT_REMAINING.prometheus_name: min, c.GEN_AI_CLIENT_RATE_LIMIT.prometheus_name: max}


@dataclass
class HistogramData:
    buckets: dict[float, float] = field(default_factory=dict)  # cumulative, le -> count
    count: float = 0.0
    total: float = 0.0

    def bucket(self, q: float) -> tuple[float | None, float | None]:
        """The bounds (lower, upper] of the bucket that holds percentile ``q``; (None, None) when empty."""
        if not self.count:
            return None, None
        rank, lower = q * self.count, 0.0
        for bound in sorted(self.buckets):
            if self.buckets[bound] >= rank:
                return lower, bound
            lower = bound
        return lower, math.inf

    def estimate(self, q: float) -> float | None:
        """Percentile ``q`` interpolated, where its bucket is narrow enough to name a value (its upper
        bound at most twice its lower); None where it is not."""
        low, high = self.bucket(q)
        if low and high is not None and high <= 2 * low:
            return self.quantile(q)
        return None

    def describe(self, q: float) -> str:
        """Percentile ``q`` as honestly as the buckets allow: a value, or the bucket ("100-250 ms")."""
        low, high = self.bucket(q)
        value = self.estimate(q)
        if low is None or high is None:
            return "-"
        if value is not None:
            return ms(value)
        if math.isinf(high):
            return f">{ms(low)}"
        return f"{ms_number(low)}-{ms(high)}" if low else f"<={ms(high)}"

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def add(self, other: HistogramData) -> None:
        """Merge another series (of another label set, worker or instance) into this one."""
        self.count += other.count
        self.total += other.total
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count

    def quantile(self, q: float) -> float:
        """Prometheus-style histogram_quantile: linear inside the bucket."""
        if not self.count:
            return math.nan
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for bound in sorted(self.buckets):
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0.0
                return lower_bound + (bound - lower_bound) * share
            lower_bound, lower_count = bound, count
        return lower_bound


    def minus(self, earlier: HistogramData) -> HistogramData:
        """What was observed since ``earlier`` (the same series read before); a reset starts over."""
        if self.count < earlier.count:
            return self
        return HistogramData({bound: count - earlier.buckets.get(bound, 0.0) for bound, count in self.buckets.items()},
                             self.count - earlier.count, self.total - earlier.total)


@dataclass
class Reading:
    """All endpoints read once, at ``time``."""

    time: float
    samples: Samples
    histograms: Histograms

    @classmethod
    def of(cls, texts: Sequence[str], at: float | None = None) -> Reading:
        samples, histograms = parse(texts)
        return cls(time.time() if at is None else at, samples, histograms)

    def histogram(self, spec: c.InstrumentSpec) -> dict[tuple, HistogramData]:
        return self.histograms.get(spec.prometheus_name, {})

    def sample(self, spec: c.InstrumentSpec) -> dict[tuple, float]:
        return self.samples.get(spec.prometheus_name, {})


def read_metrics(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a URL the user gave
        return response.read().decode()


def read_all(urls: list[str], timeout: float = 5.0) -> list[str]:
    """The expositions of several endpoints; raises OSError naming the URL that failed."""
    texts = []
    for url in urls:
        try:
            texts.append(read_metrics(url, timeout))
        except OSError as exc:
            raise OSError(f"cannot read {url}: {exc}") from exc
    return texts


def parse(texts: str | Sequence[str]) -> tuple[dict, dict]:
    """(samples by name -> {labels tuple: value}, histograms by name -> {labels tuple: HistogramData}).

    Several expositions (one per endpoint) are merged: the same series from two endpoints is summed,
    and a peak takes the larger.
    """
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    histograms: dict[str, dict[tuple, HistogramData]] = defaultdict(lambda: defaultdict(HistogramData))
    for text in [texts] if isinstance(texts, str) else texts:
        one_samples, one_histograms = _parse_one(text)
        for name, series in one_samples.items():
            for key, value in series.items():
                before = samples[name].get(key)
                combine = _MERGE.get(name, max if name.endswith("_peak") else operator.add)
                samples[name][key] = value if before is None else combine(before, value)
        for name, series in one_histograms.items():
            for key, data in series.items():
                histograms[name][key].add(data)
    return samples, histograms


def _parse_one(text: str) -> tuple[dict, dict]:
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    histograms: dict[str, dict[tuple, HistogramData]] = defaultdict(lambda: defaultdict(HistogramData))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_scope_")}
            if family.type == "histogram":
                le = labels.pop("le", None)
                key = tuple(sorted(labels.items()))
                data = histograms[family.name][key]
                if sample.name.endswith("_bucket") and le is not None:
                    data.buckets[float(le)] = sample.value
                elif sample.name.endswith("_count"):
                    data.count = sample.value
                elif sample.name.endswith("_sum"):
                    data.total = sample.value
            else:
                samples[sample.name][tuple(sorted(labels.items()))] = sample.value
    return samples, histograms


def label(key: tuple, name: str, default: str = "-") -> str:
    """A label's value; the exporter writes an attribute a point lacks as "" when others have it."""
    return dict(key).get(name) or default


def ms_number(seconds: float) -> str:
    milliseconds = seconds * 1000
    return f"{milliseconds:.0f}" if milliseconds >= 10 or milliseconds == int(milliseconds) else f"{milliseconds:.1f}"


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{ms_number(seconds)} ms"


def route_of(key: tuple) -> tuple[str, str]:
    """(method, route) of a series; a request no route matched shows as "(unmatched)"."""
    return label(key, L[c.METHOD]), label(key, L[c.ROUTE], "(unmatched)")


def by_route(histograms: dict) -> tuple[dict[tuple, HistogramData], dict[tuple, float]]:
    """Request durations and error counts by (method, route), every other label merged."""
    durations = histograms.get(c.REQUEST_DURATION.prometheus_name, {})
    errors: dict[tuple, float] = defaultdict(float)
    for key, data in durations.items():
        if label(key, L[c.ERROR_TYPE], "") or label(key, L[c.STATUS], "0").startswith("5"):
            errors[route_of(key)] += data.count
    return per_route(durations), errors


def per_route(series: dict[tuple, HistogramData]) -> dict[tuple[str, str], HistogramData]:
    """One histogram per (method, route), every other label merged."""
    out: dict[tuple[str, str], HistogramData] = defaultdict(HistogramData)
    for key, data in series.items():
        out[route_of(key)].add(data)
    return dict(out)


def models(histograms: dict) -> list[dict]:
    """Per (operation, requested model): request count, token histograms and first-token timings."""
    durations = histograms.get(c.GEN_AI_SERVER_DURATION.prometheus_name, {})
    tokens = histograms.get(c.GEN_AI_SERVER_TOKENS.prometheus_name, {})
    token_type, estimated_label = L[c.GEN_AI_TOKEN_TYPE], L[c.GEN_AI_ESTIMATED]
    found = []
    for operation, model in sorted({(label(k, L[c.GEN_AI_OPERATION]), label(k, L[c.GEN_AI_REQUEST_MODEL], ""))
                                    for k in durations}):
        labels = {L[c.GEN_AI_OPERATION]: operation, L[c.GEN_AI_REQUEST_MODEL]: model or None}
        found.append({
            "operation": operation, "model": model or None, "requests": merged(durations, **labels).count,
            "input": merged(tokens, **labels, **{token_type: "input"}),
            "output": merged(tokens, **labels, **{token_type: "output"}),
            "estimated": merged(tokens, **labels, **{token_type: "output", estimated_label: "true"}).total,
            "ttft": merged(histograms.get(c.GEN_AI_SERVER_TTFT.prometheus_name, {}), **labels),
            "tpot": merged(histograms.get(c.GEN_AI_SERVER_TPOT.prometheus_name, {}), **labels)})
    return found


def merged(series: dict[tuple, HistogramData], **labels: str | None) -> HistogramData:
    """All series whose labels match (None: the label is absent, which the exporter writes as "")."""
    merged = HistogramData()
    for key, data in series.items():
        if all((dict(key).get(k) or None) == (v or None) for k, v in labels.items()):
            merged.add(data)
    return merged


