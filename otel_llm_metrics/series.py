"""Plain-Python histograms keyed by attribute values: what the hot path writes to.

One OTel SDK ``Histogram.record`` costs ~5 us here; a bucket increment in a dict-held list costs
~0.2 us. Requests therefore write into these structures, and ``bridge.py`` turns them into OTel
data points only when a reader collects.

Two kinds of group, by who writes:
- ``HistogramGroup``: written only by the event loop (the middleware, limiters, the lag monitor),
  lock-free. Readers (collection threads) take copies; a bucket count is never torn, and the
  count is derived from the buckets so ``_count`` always equals the ``+Inf`` bucket.
- ``SharedHistogramGroup``: written from any thread (span processors, thread-pool caches, sync
  database pools); ``record`` and ``snapshot`` hold the group's lock, so no increment is lost
  however many threads write, on free-threaded builds too.

Each group names its instruments (``series.duration``, not ``series[0]``) and its attribute keys
come from the catalogue; the stats modules build keys in that order through small functions that
a unit test ties to the specs.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Observation
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

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations (same bounds): gathered off the series, recorded in one step."""
        for i, count in enumerate(other.counts):
            if count:
                self.counts[i] += count
        self.total += other.total
        if other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max

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


def _series_type(fields: tuple[str, ...]) -> type:
    """A small class with one slot per instrument of a group: ``series.duration`` reads as fast as ``[0]``."""
    def __init__(self, specs: Sequence[InstrumentSpec]) -> None:  # noqa: N807
        for name, spec in zip(fields, specs, strict=True):
            setattr(self, name, Histogram(spec.buckets))
    return type("Series", (), {"__slots__": fields, "__init__": __init__})


class HistogramGroup:
    """Histograms that share one attribute set, so one dict lookup serves all of them.

    The number of attribute sets is capped: past ``max_series`` new sets share one series marked
    ``otel.metric.overflow=true`` (the SDK's own convention), so no traffic can grow memory or
    the series count without bound.
    """

    def __init__(self, instruments: Mapping[str, InstrumentSpec], max_series: int = 2000,
                 without_extremes: Sequence[str] = ()) -> None:
        specs = tuple(instruments.values())
        if len({spec.attributes for spec in specs}) != 1:
            raise ValueError("a HistogramGroup's instruments must share their attribute keys")
        self.instruments = dict(instruments)
        self._specs = specs
        self.attribute_keys = specs[0].attributes
        self.max_series = max_series
        # The middleware inlines some updates and skips min/max where nobody reads them (body
        # sizes): those are exported as unknown.
        self.without_extremes = frozenset(without_extremes)
        self._new_series = _series_type(tuple(instruments))
        self.series: dict[tuple, object] = {}
        self.attributes: dict[tuple, dict] = {}
        self.start_time_ns = time.time_ns()

    def get(self, key: tuple):  # noqa: ANN201 - a Series with one Histogram attribute per instrument
        """The series for one attribute-value tuple (None values are left out of attributes)."""
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
            attributes = {k: v for k, v in zip(self.attribute_keys, key, strict=True) if v is not None}
        created = self._new_series(self._specs)
        self.attributes[key] = attributes
        self.series[key] = created
        return created

    def snapshot(self, field: str) -> list[HistogramSnapshot]:
        """A copy of instrument ``field``'s series, safe to take from another thread."""
        known_extremes = field not in self.without_extremes
        out = []
        for key, series in self.series.copy().items():
            h: Histogram = getattr(series, field)
            counts = tuple(h.counts)
            if not any(counts):
                continue
            known = known_extremes and h.min <= h.max
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


class SharedHistogramGroup(HistogramGroup):
    """A group written from several threads: every write and every snapshot holds its lock."""

    def __init__(self, instruments: Mapping[str, InstrumentSpec], max_series: int = 2000) -> None:
        super().__init__(instruments, max_series)
        self.lock = threading.Lock()

    def record(self, key: tuple, field: str, value: float) -> None:
        with self.lock:
            getattr(self.get(key), field).record(value)

    def snapshot(self, field: str) -> list[HistogramSnapshot]:
        with self.lock:
            return super().snapshot(field)

    def reset(self) -> None:
        self.lock = threading.Lock()  # also after fork, where another thread may have held it
        super().reset()


class CounterGroup:
    """Monotonic counts keyed by attribute values, written by the event loop, read at collection.

    Capped like a HistogramGroup: past ``max_series`` new attribute sets share one overflow count.
    """

    def __init__(self, spec: InstrumentSpec, max_series: int = 2000) -> None:
        self.spec = spec
        self.max_series = max_series
        self.reset()

    def add(self, key: tuple, value: int = 1) -> None:
        counts = self.counts
        if key in counts:
            counts[key] += value
        elif len(counts) < self.max_series:
            counts[key] = value
            self.attributes[key] = {k: v for k, v in zip(self.spec.attributes, key, strict=True) if v is not None}
        else:
            counts[_OVERFLOW_KEY] = counts.get(_OVERFLOW_KEY, 0) + value
            self.attributes[_OVERFLOW_KEY] = dict(OVERFLOW_ATTRIBUTES)

    def observe(self, _: CallbackOptions) -> Iterator[Observation]:
        for key, value in list(self.counts.items()):
            yield Observation(value, self.attributes[key])

    def reset(self) -> None:
        self.counts: dict[tuple, int] = {}
        self.attributes: dict[tuple, dict] = {}


class SharedCounterGroup(CounterGroup):
    """A CounterGroup written from several threads (sync HTTP clients in thread pools)."""

    def __init__(self, spec: InstrumentSpec, max_series: int = 2000) -> None:
        self.lock = threading.Lock()
        super().__init__(spec, max_series)

    def add(self, key: tuple, value: float = 1) -> None:
        with self.lock:
            counts = self.counts
            if key in counts:  # the common case inline: an LLM call's cost adds here on the request path
                counts[key] += value
            else:
                super().add(key, value)

    def observe(self, options: CallbackOptions) -> Iterator[Observation]:
        with self.lock:
            observed = list(super().observe(options))
        yield from observed

    def reset(self) -> None:
        self.lock = threading.Lock()  # also after fork, where another thread may have held it
        super().reset()


class GaugeGroup(SharedCounterGroup):
    """The last value seen per attribute set (a provider's remaining rate limit, say), from any thread."""

    def set(self, key: tuple, value: float) -> None:
        with self.lock:
            counts = self.counts
            if key in counts or len(counts) < self.max_series:
                if key not in counts:
                    self.attributes[key] = {k: v for k, v in zip(self.spec.attributes, key, strict=True)
                                            if v is not None}
                counts[key] = value
