"""Base-2 exponential histograms for readers that prefer them, at the SDK's scale and max_size semantics.

Only built when a reader asks (``MetricsBridge.attach``): then every ``series.Histogram`` holds an
``ExponentialSum`` in its ``total`` slot instead of a float. ``h.total += value``, which both
``Histogram.record`` and the middleware's inlined updates already execute, then also maps ``value`` to
its bucket, so the default path (a float ``total``) runs exactly the code it ran before.

Mapping: the SDK's ``LogarithmMapping`` / ``ExponentMapping``. Its ``map_to_index`` reads the IEEE 754
exponent and mantissa through ctypes (1-3 us a value, 2-3x the SDK mapping's own arithmetic; measured in
benchmarks/bench_exponential.py). For a normal value at scale > 0 the record path therefore computes what
it computes, inline, with the mapping's own factor (``floor(log(value) * scale_factor)``, or
``(exponent << scale) - 1`` for an exact power of two, found by ``frexp``), and hands every other value
(subnormals, infinity, scales <= 0) to the mapping itself. tests/unit/test_exponential.py checks the two
agree, value by value, and that whole histograms match the SDK aggregation's buckets.

Readers (collection threads) take copies while the event loop writes, without a lock: the rare
structural changes (growing the bucket range, downscaling) bump ``version`` before and after, and a
snapshot retries when it saw a change in progress (a seqlock). A single bucket increment racing a copy
shows up at the next collection, as with the explicit buckets.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from math import floor, frexp, inf, log
from sys import float_info

from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping import Mapping
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.exponent_mapping import ExponentMapping
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import LogarithmMapping

logger = logging.getLogger(__name__)
DEFAULT_MAX_SIZE = 160  # the SDK's defaults (ExponentialBucketHistogramAggregation)
DEFAULT_MAX_SCALE = 20
_MIN_NORMAL = float_info.min
_MAX_NORMAL = float_info.max


def new_mapping(scale: int) -> Mapping:
    """The SDK's mapping for ``scale`` (cached by the SDK: one object per scale)."""
    return LogarithmMapping(scale) if scale > 0 else ExponentMapping(scale)


@dataclass(frozen=True)
class ExponentialSnapshot:
    """Positive buckets ``offset .. offset+len(counts)-1`` at ``scale``; values <= 0 are in ``zero_count``."""

    scale: int
    offset: int
    counts: tuple[int, ...]
    zero_count: int
    sum: float
    min: float | None
    max: float | None

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.counts)


class ExponentialSum:
    """A histogram's running total that also keeps exponential buckets of what was added to it.

    ``before``: the explicit total when this replaced the float (exported to explicit readers as
    ``before + sum``); the exponential numbers themselves start here, so they are exact from then on.
    """

    __slots__ = ("before", "sum", "zero_count", "min", "max", "scale", "mapping", "factor", "low", "counts",
                 "max_size", "version")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE, max_scale: int = DEFAULT_MAX_SCALE,
                 before: float = 0.0) -> None:
        self.before = before
        self.sum = 0.0
        self.zero_count = 0
        self.min = inf
        self.max = -inf
        self.max_size = max_size
        self.low = 0
        self.counts: list[int] = []
        self.version = 0
        self._set_scale(max_scale)

    def _set_scale(self, scale: int) -> None:
        self.scale = scale
        self.mapping = new_mapping(scale)
        # 0.0 sends every value through the mapping: ExponentMapping (scale <= 0) has no factor.
        self.factor = self.mapping._scale_factor if scale > 0 else 0.0  # noqa: SLF001

    def __float__(self) -> float:
        return self.before + self.sum

    def __radd__(self, other: float) -> float:
        return other + self.before + self.sum

    def __iadd__(self, value: float) -> ExponentialSum:
        """``h.total += value``: add to the sum and count ``value`` in its bucket."""
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value > 0:
            factor = self.factor
            if factor and _MIN_NORMAL < value < _MAX_NORMAL:  # LogarithmMapping.map_to_index's formulas
                mantissa, exponent = frexp(value)
                # An exact power of two closes the bucket below it (found without ctypes: 3 us -> 0.1 us).
                index = floor(log(value) * factor) if mantissa != 0.5 else ((exponent - 1) << self.scale) - 1
            else:
                index = self.mapping.map_to_index(value)
            at = index - self.low
            counts = self.counts
            if 0 <= at < len(counts):
                counts[at] += 1
            else:
                self._widen(value, index)
        else:  # zero (our values are >= 0; a negative or NaN one is counted here rather than lost)
            self.zero_count += 1
        return self

    def _widen(self, value: float, index: int) -> None:
        """Grow the bucket range to ``index``, downscaling first if it would exceed ``max_size``."""
        self.version += 1  # odd: a structural change is under way
        try:
            counts = self.counts
            while counts:
                low, high = min(self.low, index), max(self.low + len(counts) - 1, index)
                change = _scale_change(low, high, self.max_size)
                if not change:
                    break
                self._load_buckets(downscale_buckets(self.low, counts, change), self.scale - change)
                counts = self.counts
                index = self.mapping.map_to_index(value)  # as the SDK does: the value mapped afresh
            if not counts:
                self.low, self.counts = index, [1]
                return
            if index < self.low:
                self.counts = [0] * (self.low - index) + counts
                self.low = index
            elif index >= self.low + len(counts):
                counts.extend([0] * (index - self.low - len(counts) + 1))
            self.counts[index - self.low] += 1
        finally:
            self.version += 1

    def _load_buckets(self, buckets: tuple[int, list[int]], scale: int) -> None:
        self.low, self.counts = buckets
        self._set_scale(scale)

    def snapshot(self) -> ExponentialSnapshot | None:
        """A consistent copy, safe from another thread; None if the writer kept changing the structure."""
        for _ in range(1000):
            version = self.version
            if not version & 1:
                scale, low, counts = self.scale, self.low, tuple(self.counts)
                zero, total, low_value, high_value = self.zero_count, self.sum, self.min, self.max
                if self.version == version:
                    known = low_value <= high_value
                    offset, counts = _trimmed(low, counts)
                    return ExponentialSnapshot(scale, offset, counts, zero, total,
                                               low_value if known else None, high_value if known else None)
            time.sleep(0)  # let the writer finish its change
        return None

    def merge(self, other: ExponentialSum) -> None:
        """Add ``other``'s observations; called by this structure's only writer (or under its lock)."""
        theirs, mine = other.snapshot(), self.snapshot()
        if theirs is None or mine is None:  # a writer that never paused in 1000 tries: said, not hidden
            logger.warning("otel_llm_metrics: an exponential histogram's buckets kept changing while being merged; "
                           "this collection leaves %s observations out of them", "their" if theirs is None else "its")
            return
        merged = merge(mine, theirs, self.max_size)
        self.version += 1
        try:
            self._load_buckets((merged.offset, list(merged.counts)) if merged.counts else (0, []), merged.scale)
            self.zero_count, self.sum = merged.zero_count, merged.sum
            self.min = merged.min if merged.min is not None else inf
            self.max = merged.max if merged.max is not None else -inf
        finally:
            self.version += 1


def _scale_change(low: int, high: int, max_size: int) -> int:
    """How many halvings make ``low .. high`` fit in ``max_size`` buckets (the SDK's _get_scale_change)."""
    change = 0
    while high - low >= max_size:
        high >>= 1
        low >>= 1
        change += 1
    return change


def _trimmed(offset: int, counts: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """Without empty buckets at either end (a delta often has some)."""
    start, end = 0, len(counts)
    while start < end and not counts[start]:
        start += 1
    while end > start and not counts[end - 1]:
        end -= 1
    return (offset + start, counts[start:end]) if start < end else (0, ())


def downscale_buckets(offset: int, counts: list[int] | tuple[int, ...], change: int) -> tuple[int, list[int]]:
    """Merge each 2**change neighbours into one: index i becomes i >> change (exact, as the SDK's downscale)."""
    if not change or not counts:
        return offset, list(counts)
    new_offset = offset >> change
    out = [0] * (((offset + len(counts) - 1) >> change) - new_offset + 1)
    for i, count in enumerate(counts):
        if count:
            out[((offset + i) >> change) - new_offset] += count
    return new_offset, out


def at_scale(snap: ExponentialSnapshot, scale: int) -> ExponentialSnapshot:
    """``snap`` downscaled to ``scale`` (<= its own)."""
    if scale >= snap.scale:
        return snap
    offset, counts = downscale_buckets(snap.offset, snap.counts, snap.scale - scale)
    return ExponentialSnapshot(scale, offset, tuple(counts), snap.zero_count, snap.sum, snap.min, snap.max)


def fit(snap: ExponentialSnapshot, max_size: int, max_scale: int) -> ExponentialSnapshot:
    """Downscaled to a reader's limits: no finer than ``max_scale``, no more than ``max_size`` buckets."""
    scale = min(snap.scale, max_scale)
    if snap.counts:
        shift = snap.scale - scale
        scale -= _scale_change(snap.offset >> shift, (snap.offset + len(snap.counts) - 1) >> shift, max_size)
    return at_scale(snap, scale)


def _common_scale(a: ExponentialSnapshot, b: ExponentialSnapshot, max_size: int) -> int:
    """The finest scale at which both sets of buckets together fit in ``max_size``."""
    if not a.counts:
        return b.scale if b.counts else min(a.scale, b.scale)
    if not b.counts:
        return a.scale
    scale = min(a.scale, b.scale)
    shift_a, shift_b = a.scale - scale, b.scale - scale
    low = min(a.offset >> shift_a, b.offset >> shift_b)
    high = max((a.offset + len(a.counts) - 1) >> shift_a, (b.offset + len(b.counts) - 1) >> shift_b)
    return scale - _scale_change(low, high, max_size)


def merge(a: ExponentialSnapshot, b: ExponentialSnapshot, max_size: int = DEFAULT_MAX_SIZE) -> ExponentialSnapshot:
    """Both sets of observations, at the common (lower) scale; two groups writing one instrument are summed."""
    scale = _common_scale(a, b, max_size)
    a, b = at_scale(a, scale), at_scale(b, scale)
    if not a.counts or not b.counts:
        offset, counts = (a.offset, a.counts) if a.counts else (b.offset, b.counts)
    else:
        offset = min(a.offset, b.offset)
        out = [0] * (max(a.offset + len(a.counts), b.offset + len(b.counts)) - offset)
        for snap in (a, b):
            for i, count in enumerate(snap.counts, snap.offset - offset):
                out[i] += count
        counts = tuple(out)
    known = a.min is not None and b.min is not None
    return ExponentialSnapshot(scale, offset, counts, a.zero_count + b.zero_count, a.sum + b.sum,
                               min(a.min, b.min) if known else None,  # type: ignore[type-var]
                               max(a.max, b.max) if known else None)  # type: ignore[type-var]


def subtract(current: ExponentialSnapshot, previous: ExponentialSnapshot) -> ExponentialSnapshot | None:
    """What ``current`` gained since ``previous``, at their common (lower) scale, min/max unknown.

    None when some bucket went down: the series was reset (a fork), so ``current`` stands alone.
    """
    scale = min(current.scale, previous.scale)
    current, previous = at_scale(current, scale), at_scale(previous, scale)
    zero = current.zero_count - previous.zero_count
    if zero < 0:
        return None
    out = list(current.counts)
    for i, count in enumerate(previous.counts, previous.offset - current.offset):
        if count:
            if not 0 <= i < len(out) or out[i] < count:
                return None
            out[i] -= count
    offset, counts = _trimmed(current.offset, tuple(out))
    return ExponentialSnapshot(scale, offset, counts, zero, current.sum - previous.sum, None, None)
