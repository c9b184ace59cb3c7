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
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Exemplar

from .catalogue import InstrumentSpec
from .exponential import ExponentialSnapshot, ExponentialSum

OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}
_OVERFLOW_KEY = ("__overflow__",)

# (max_size, max_scale) once a reader of this process wants exponential histograms (MetricsBridge.attach):
# from then on every Histogram keeps exponential buckets too. Process-wide, like the readers' export.
_exponential: tuple[int, int] | None = None


def want_exponential(max_size: int, max_scale: int) -> None:
    """Keep exponential buckets in every Histogram created from now on, fine enough for every reader
    that asked (the largest max_size and max_scale; a reader wanting less gets them downscaled)."""
    global _exponential  # noqa: PLW0603 - one switch for the process, set before traffic
    if _exponential is not None:
        max_size, max_scale = max(max_size, _exponential[0]), max(max_scale, _exponential[1])
    _exponential = (max_size, max_scale)


class Histogram:
    """Explicit-bucket histogram; bucket i holds values in (bounds[i-1], bounds[i]].

    ``total`` is a float, or an ``ExponentialSum`` once a reader wants exponential histograms: then
    ``total += value`` (here and in the middleware's inlined updates) also fills exponential buckets,
    while the default path keeps running exactly the code it ran before. Read it with ``float()``.
    """

    __slots__ = ("bounds", "counts", "total", "min", "max", "exemplars")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total: float | ExponentialSum = 0.0 if _exponential is None else ExponentialSum(*_exponential)
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

    def record_many(self, values: list[float]) -> None:
        """Record every value of ``values`` (sorted in place): one bisect per bucket bound instead of one per
        value, which is what a stream's chunk gaps, gathered as a list, cost at its end."""
        if not values:
            return
        values.sort()
        counts, previous = self.counts, 0
        for i, bound in enumerate(self.bounds):
            at = bisect_right(values, bound, previous)  # values <= bound: bucket i holds (bounds[i-1], bounds[i]]
            counts[i] += at - previous
            previous = at
        counts[-1] += len(values) - previous
        total = self.total
        if isinstance(total, float):
            self.total = total + sum(values)
        else:  # an ExponentialSum: each value fills its exponential bucket
            for value in values:
                total += value
        if values[0] < self.min:
            self.min = values[0]
        if values[-1] > self.max:
            self.max = values[-1]

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations (same bounds): gathered off the series, recorded in one step."""
        for i, count in enumerate(other.counts):
            if count:
                self.counts[i] += count
        mine, theirs = self.total, other.total
        if isinstance(mine, ExponentialSum):
            if isinstance(theirs, ExponentialSum):
                mine.merge(theirs)
                mine.before += theirs.before
            else:  # gathered before exponential buckets were wanted: in the explicit total only
                mine.before += theirs
        else:
            self.total = mine + theirs  # a float: ExponentialSum.__radd__
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
    exponential: ExponentialSnapshot | None = None  # only when asked for, and the series keeps them


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

    def snapshot(self, field: str, exponential: bool = False) -> list[HistogramSnapshot]:
        """A copy of instrument ``field``'s series, safe to take from another thread; ``exponential``:
        with their exponential buckets (series that keep none yet are left out then)."""
        known_extremes = field not in self.without_extremes
        out = []
        for key, series in self.series.copy().items():
            h: Histogram = getattr(series, field)
            counts = tuple(h.counts)
            if not any(counts):
                continue
            known = known_extremes and h.min <= h.max
            total, exp = h.total, None
            if isinstance(total, ExponentialSum):
                exp = total.snapshot() if exponential else None
                total = float(total)
            if exponential and exp is None:
                continue
            exemplars = tuple(Exemplar(filtered_attributes={}, value=value, time_unix_nano=at, trace_id=trace_id,
                                       span_id=span_id)
                              for value, at, trace_id, span_id in filter(None, list(h.exemplars or ())))
            out.append(HistogramSnapshot(self.attributes[key], counts, total,
                                         h.min if known else None, h.max if known else None, exemplars, exp))
        return out

    def keep_exponential(self) -> None:
        """Give the series created before exponential buckets were wanted their own, exact from now on.

        Called at attach and at each exponential collection, so groups and series made since are covered.
        An event-loop write racing this (traffic before attach) can lose the new structure or one
        value's explicit sum; the next call puts a new one in place: turn the mode on before traffic.
        """
        limits = _exponential
        if limits is None:
            return
        for series in list(self.series.values()):
            for field in self.instruments:
                h: Histogram = getattr(series, field)
                if not isinstance(h.total, ExponentialSum):
                    h.total = ExponentialSum(*limits, before=h.total)

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

    def snapshot(self, field: str, exponential: bool = False) -> list[HistogramSnapshot]:
        with self.lock:
            return super().snapshot(field, exponential)

    def keep_exponential(self) -> None:
        with self.lock:
            super().keep_exponential()

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
