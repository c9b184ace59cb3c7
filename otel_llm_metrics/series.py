"""Plain-Python histograms keyed by attribute values: what the hot path writes to.

One OTel SDK ``Histogram.record`` costs ~5 us here; a bucket increment in a dict-held list costs
~0.2 us. Requests therefore write into these structures, and ``bridge.py`` turns them into OTel
data points only when a reader collects. Writers are event-loop code; readers (collection
threads) take copies, which the GIL makes consistent enough: a bucket count is never torn, and the
count is derived from the buckets so ``_count`` always equals the ``+Inf`` bucket.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics import Exemplar

from .catalogue import InstrumentSpec

OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}
_OVERFLOW_KEY = ("__overflow__",)


class Histogram:
    """Explicit-bucket histogram; bucket i holds values in (bounds[i-1], bounds[i]]."""

    __slots__ = ("bounds", "counts", "total", "min", "max", "exemplars")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.exemplars: list[tuple[float, int, int, int] | None] | None = None

    def record(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def exemplar(self, value: float, trace_id: int, span_id: int) -> None:
        """Keep the latest sampled measurement of ``value``'s bucket, so a slow bucket links to a trace."""
        if self.exemplars is None:
            self.exemplars = [None] * len(self.counts)
        self.exemplars[bisect_left(self.bounds, value)] = (value, time.time_ns(), trace_id, span_id)


@dataclass(frozen=True)
class HistogramSnapshot:
    attributes: dict
    counts: tuple[int, ...]
    total: float
    min: float | None
    max: float | None
    exemplars: tuple[Exemplar, ...] = ()


class HistogramGroup:
    """Histograms that share one attribute set, so one dict lookup serves all of them.

    The number of attribute sets is capped: past ``max_series`` new sets share one series marked
    ``otel.metric.overflow=true`` (the SDK's own convention), so no traffic can grow memory or
    the series count without bound.
    """

    def __init__(self, specs: Sequence[InstrumentSpec], max_series: int = 2000,
                 extremes: Sequence[bool] | None = None) -> None:
        names = {spec.attributes for spec in specs}
        if len(names) != 1:
            raise ValueError("a HistogramGroup's instruments must share their attribute keys")
        self.specs = tuple(specs)
        self.attribute_keys = specs[0].attributes
        self.max_series = max_series
        # Whether each instrument tracks min/max; the middleware inlines its updates and skips
        # them where nobody reads them (body sizes), so they are exported as unknown there.
        self.extremes = tuple(extremes) if extremes is not None else (True,) * len(self.specs)
        self.series: dict[tuple, list[Histogram]] = {}
        self.attributes: dict[tuple, dict] = {}
        self.start_time_ns = time.time_ns()

    def get(self, key: tuple) -> list[Histogram]:
        """The histograms for one attribute-value tuple (None values are left out of attributes)."""
        found = self.series.get(key)
        if found is not None:
            return found
        if len(self.series) >= self.max_series:
            key = _OVERFLOW_KEY
            found = self.series.get(key)
            if found is not None:
                return found
            attributes = dict(OVERFLOW_ATTRIBUTES)
        else:
            attributes = {k: v for k, v in zip(self.attribute_keys, key, strict=False) if v is not None}
        created = [Histogram(spec.buckets) for spec in self.specs]
        self.attributes[key] = attributes
        self.series[key] = created
        return created

    def snapshot(self, index: int) -> list[HistogramSnapshot]:
        """A copy of instrument ``index``'s series, safe to take from another thread."""
        out = []
        for key, histograms in self.series.copy().items():
            h = histograms[index]
            counts = tuple(h.counts)
            if not any(counts):
                continue
            known = self.extremes[index] and h.min <= h.max
            exemplars = tuple(Exemplar(filtered_attributes={}, value=value, time_unix_nano=at, trace_id=trace_id,
                                       span_id=span_id)
                              for value, at, trace_id, span_id in filter(None, list(h.exemplars or ())))
            out.append(HistogramSnapshot(self.attributes[key], counts, h.total,
                                         h.min if known else None, h.max if known else None, exemplars))
        return out

    def reset(self) -> None:
        self.series = {}
        self.attributes = {}
        self.start_time_ns = time.time_ns()
