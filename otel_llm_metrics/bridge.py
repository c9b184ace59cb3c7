"""Adds our plain-Python histograms to every collection a reader makes.

The OpenTelemetry specification has a MetricProducer for exactly this (metrics aggregated
outside the SDK, handed over at collection time); the Python SDK does not implement it yet, so
this wraps the collect callback that ``MeterProvider`` gives each reader. Whatever the reader
(Prometheus, OTLP periodic, in-memory), it receives one ``MetricsData`` with the SDK's metrics
and ours, under the current process's resource (right after a fork, too). Temporality follows
the reader's preference for histograms: cumulative, or delta against that reader's last take.
So does the kind: a reader whose histogram aggregation is base-2 exponential (an OTLP exporter with
OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=base2_exponential_bucket_histogram) gets
exponential histograms, at its max_size and max_scale; the others keep explicit buckets.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from opentelemetry.sdk.metrics._internal.instrument import _Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import Aggregation, ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import series
from .catalogue import InstrumentSpec
from .exponential import DEFAULT_MAX_SCALE, DEFAULT_MAX_SIZE, ExponentialSnapshot, fit, merge, subtract
from .frameworks import PROVIDER_KEYS, copied
from .series import HistogramGroup, HistogramSnapshot

logger = logging.getLogger(__name__)


class _ReaderState:
    """What one reader saw last time, for delta temporality; ``exponential``: its (max_size, max_scale)."""

    def __init__(self, temporality: AggregationTemporality, exponential: tuple[int, int] | None = None) -> None:
        self.temporality = temporality
        self.exponential = exponential
        self.previous: dict[tuple[str, frozenset], tuple[tuple[int, ...], float]] = {}
        self.previous_exponential: dict[tuple[str, frozenset], ExponentialSnapshot] = {}
        self.last_time_ns = time.time_ns()


def exponential_limits(aggregation: Aggregation | None) -> tuple[int, int] | None:
    """(max_size, max_scale) when a reader's histogram aggregation is base-2 exponential, else None."""
    if not isinstance(aggregation, ExponentialBucketHistogramAggregation):
        return None
    return (getattr(aggregation, "_max_size", DEFAULT_MAX_SIZE), getattr(aggregation, "_max_scale", DEFAULT_MAX_SCALE))


class MetricsBridge:
    def __init__(self, groups: Callable[[], Iterable[HistogramGroup]], resource: Callable[[], Resource],
                 scope: InstrumentationScope, owned_names: frozenset[str] = frozenset(),
                 measuring: frozenset[str] = frozenset()) -> None:
        self._groups = groups
        self._resource = resource
        self._scope = scope
        # Names we publish: another scope's metric of the same name (opentelemetry-instrumentation-system-metrics'
        # process.cpu.time, a framework's http.server.request.duration) is left out, so sum() never doubles;
        # gen_ai.* ones only from scopes that measure the calls we measure (frameworks.COPYING_SCOPES).
        self._owned = owned_names
        self._measuring = measuring  # what of ours measures calls (frameworks.copied)

    def attach(self, reader: MetricReader) -> None:
        """Wrap ``reader``'s collect callback; call after the MeterProvider has taken the reader. (Whether a
        process collects at all is its role's to say: ``process_role.gate``.)"""
        original = getattr(reader, "_collect", None)
        if original is None:
            raise RuntimeError("attach() needs a reader that a MeterProvider has already registered")
        temporality = getattr(reader, "_instrument_class_temporality", {}).get(
            _Histogram, AggregationTemporality.CUMULATIVE)
        limits = exponential_limits(getattr(reader, "_instrument_class_aggregation", {}).get(_Histogram))
        if limits is not None:
            # Exact from here on; series that already took traffic count from now (see keep_exponential).
            series.want_exponential(*limits)
            for group in self._groups():
                group.keep_exponential()
        state = _ReaderState(temporality, limits)

        def collect(reader_: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
            data = original(reader_, timeout_millis=timeout_millis)
            try:
                return self._merge(data, state)
            except Exception:  # a bug of ours must not cost the user the SDK's metrics
                logger.exception("otel_llm_metrics could not add its metrics to a collection")
                return data

        reader._collect = collect  # type: ignore[attr-defined]

    def _merge(self, data: MetricsData | None, state: _ReaderState) -> MetricsData:
        now = time.time_ns()
        ours = self._histograms(state, now)
        resource = self._resource()
        resource_metrics = list(data.resource_metrics) if data is not None else []
        if not resource_metrics:
            resource_metrics = [ResourceMetrics(resource, [], "")]
        first = resource_metrics[0]
        scopes = [self._without_copies(scope_metrics) for scope_metrics in first.scope_metrics]
        if ours:
            # One ScopeMetrics per scope: receivers keep only one of two with the same identity.
            for i, scope_metrics in enumerate(scopes):
                if (scope_metrics.scope.name, scope_metrics.scope.version) == (self._scope.name, self._scope.version):
                    scopes[i] = ScopeMetrics(scope_metrics.scope, [*scope_metrics.metrics, *ours],
                                             scope_metrics.schema_url)
                    break
            else:
                scopes.append(ScopeMetrics(self._scope, ours, ""))
        resource_metrics[0] = ResourceMetrics(resource, scopes, first.schema_url)
        for i in range(1, len(resource_metrics)):
            rm = resource_metrics[i]
            resource_metrics[i] = ResourceMetrics(resource, [self._without_copies(sm) for sm in rm.scope_metrics],
                                                  rm.schema_url)
        state.last_time_ns = now
        return MetricsData(resource_metrics)

    def _without_copies(self, scope_metrics: ScopeMetrics) -> ScopeMetrics:
        """``scope_metrics`` less what copies ours: a name we publish, from a scope that measures what we do
        (frameworks.copied: process and system facts from any scope, gen_ai.* by the table of copying scopes)."""
        if not self._owned or scope_metrics.scope.name == self._scope.name:
            return scope_metrics
        kept: list[Metric] = []
        changed = False
        for metric in scope_metrics.metrics:
            copy = copied(scope_metrics.scope.name, metric.name, self._owned, self._measuring)
            left = None if copy is True else _without_providers(metric, copy) if copy else metric
            changed = changed or left is not metric  # a shared scope: only its points of these providers go
            if left is not None:
                kept.append(left)
        if not changed:
            return scope_metrics
        return ScopeMetrics(scope_metrics.scope, kept, scope_metrics.schema_url)

    def _histograms(self, state: _ReaderState, now: int) -> list[Metric]:
        if state.exponential is not None:
            return self._exponential_histograms(state, now)
        delta = state.temporality == AggregationTemporality.DELTA
        metrics = []
        for spec, start_time, snapshots in _merged_by_instrument(self._groups()):
            points = []
            for snap in snapshots:
                counts, total, low, high = snap.counts, snap.total, snap.min, snap.max
                start = start_time
                if delta:
                    key = (spec.name, frozenset(snap.attributes.items()))
                    before = state.previous.get(key)
                    state.previous[key] = (counts, total)
                    start = max(state.last_time_ns, start_time)
                    if before is not None and all(a >= b for a, b in zip(counts, before[0], strict=True)):
                        counts = tuple(a - b for a, b in zip(counts, before[0], strict=True))
                        total -= before[1]
                        low = high = None  # unknown for the interval alone
                        if not any(counts):
                            continue
                points.append(HistogramDataPoint(
                    attributes=snap.attributes, start_time_unix_nano=start, time_unix_nano=now,
                    count=sum(counts), sum=total, bucket_counts=counts, explicit_bounds=spec.buckets,
                    min=low, max=high, exemplars=snap.exemplars))
            if points:
                metrics.append(Metric(spec.name, spec.description, spec.unit, Histogram(points, state.temporality)))
        return metrics

    def _exponential_histograms(self, state: _ReaderState, now: int) -> list[Metric]:
        max_size, max_scale = state.exponential  # type: ignore[misc]
        groups = list(self._groups())
        for group in groups:  # groups and series made since the last collection, or that lost a race
            group.keep_exponential()
        metrics = []
        for spec, start_time, snapshots in _merged_by_instrument(groups, max_size):
            points = []
            for snap in snapshots:
                exp, start = _exponential_interval(state, spec.name, snap, start_time)
                if exp is not None and exp.count:
                    points.append(_exponential_point(snap, fit(exp, max_size, max_scale), start, now))
            if points:
                metrics.append(Metric(spec.name, spec.description, spec.unit,
                                      ExponentialHistogram(points, state.temporality)))
        return metrics


def _without_providers(metric: Metric, providers: frozenset[str]) -> Metric | None:
    """``metric`` less its points of calls to ``providers`` (by gen_ai.provider.name or gen_ai.system); None if
    none is left."""
    points = getattr(metric.data, "data_points", None)
    if points is None:
        return metric
    kept = [point for point in points
            if not any((point.attributes or {}).get(key) in providers for key in PROVIDER_KEYS)]
    if len(kept) == len(points):
        return metric
    if not kept:
        return None
    return dataclasses.replace(metric, data=dataclasses.replace(metric.data, data_points=kept))


def _exponential_interval(state: _ReaderState, name: str, snap: HistogramSnapshot, start_time: int
                          ) -> tuple[ExponentialSnapshot | None, int]:
    """The buckets this reader is due and the start of their interval: all of them (cumulative), or what
    is new since its last take (delta; a series that went down was reset and stands alone)."""
    exp = snap.exponential
    if state.temporality != AggregationTemporality.DELTA or exp is None:
        return exp, start_time
    key = (name, frozenset(snap.attributes.items()))
    before = state.previous_exponential.get(key)
    state.previous_exponential[key] = exp
    start = max(state.last_time_ns, start_time)
    if before is not None:
        gained = subtract(exp, before)
        if gained is not None:
            return gained, start
    return exp, start


def _exponential_point(snap: HistogramSnapshot, exp: ExponentialSnapshot, start: int, now: int
                       ) -> ExponentialHistogramDataPoint:
    return ExponentialHistogramDataPoint(
        attributes=snap.attributes, start_time_unix_nano=start, time_unix_nano=now, count=exp.count,
        sum=exp.sum, scale=exp.scale if exp.counts else 0, zero_count=exp.zero_count,
        positive=Buckets(exp.offset, list(exp.counts)), negative=Buckets(0, []), flags=0,
        min=exp.min, max=exp.max, exemplars=snap.exemplars)  # type: ignore[arg-type]


def _merged_by_instrument(groups: Iterable[HistogramGroup], exponential_size: int | None = None
                          ) -> Iterator[tuple[InstrumentSpec, int, list[HistogramSnapshot]]]:
    """One list of snapshots per instrument: series of several groups with the same attributes are
    summed (the middleware and the span processor both write ``http.server.request.duration``).
    ``exponential_size``: with exponential buckets, merged within that many buckets."""
    by_name: dict[str, tuple[InstrumentSpec, int, dict[frozenset, HistogramSnapshot]]] = {}
    for group in groups:
        for field, spec in group.instruments.items():
            snapshots = group.snapshot(field, exponential_size is not None)
            entry = by_name.get(spec.name)
            if entry is None:
                entry = by_name[spec.name] = (spec, group.start_time_ns, {})
            elif group.start_time_ns < entry[1]:
                entry = by_name[spec.name] = (spec, group.start_time_ns, entry[2])
            merged = entry[2]
            for snap in snapshots:
                key = frozenset(snap.attributes.items())
                merged[key] = _add(merged[key], snap, exponential_size) if key in merged else snap
    for spec, start_time, merged in by_name.values():
        yield spec, start_time, list(merged.values())


def _add(a: HistogramSnapshot, b: HistogramSnapshot, exponential_size: int | None = None) -> HistogramSnapshot:
    known = a.min is not None and b.min is not None
    exp = a.exponential or b.exponential
    if a.exponential is not None and b.exponential is not None:
        exp = merge(a.exponential, b.exponential, exponential_size or DEFAULT_MAX_SIZE)
    return HistogramSnapshot(a.attributes, tuple(x + y for x, y in zip(a.counts, b.counts, strict=True)),
                             a.total + b.total, min(a.min, b.min) if known else None,  # type: ignore[type-var]
                             max(a.max, b.max) if known else None,  # type: ignore[type-var]
                             a.exemplars + b.exemplars, exp)
