"""Merged snapshots as Prometheus metric families, named as the OTel Prometheus exporter names them,
with exemplars on histogram buckets (shown when the scraper asks for OpenMetrics)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar

from .snapshot import COUNTER, HISTOGRAM, MetricRows

SCOPE_LABELS = ("otel_scope_name", "otel_scope_version", "otel_scope_schema_url")


class MergedCollector:
    """A prometheus_client collector: every scrape asks ``aggregate`` for the merged numbers."""

    def __init__(self, aggregate: Callable[[], tuple[list[MetricRows], dict[str, Any]]]) -> None:
        self._aggregate = aggregate

    def collect(self) -> Iterator[Metric]:
        metrics, resource = self._aggregate()
        yield from families(metrics, resource)

    def describe(self) -> list[Metric]:
        return []  # registering must not run a whole aggregation


def families(metrics: Iterable[MetricRows], resource: dict[str, Any]) -> Iterator[Metric]:
    if resource:
        labels = {sanitize_attribute(key): _label_value(value) for key, value in resource.items()}
        info = InfoMetricFamily("target", "Target metadata", labels=labels)
        info.add_metric(labels=list(labels), value=labels)
        yield info
    by_family: dict[tuple[str, str, str, str], list[MetricRows]] = {}
    for rows in metrics:
        if rows.points:
            family_id = (sanitize_full_name(rows.name), rows.description, map_unit(rows.unit), rows.kind)
            by_family.setdefault(family_id, []).append(rows)
    for (name, description, unit, kind), members in by_family.items():
        yield _family(name, description, unit, kind, members)


def _family(name: str, description: str, unit: str, kind: str, members: list[MetricRows]) -> Metric:
    labelled = [(_labels(rows, point[0]), point, rows) for rows in members for point in rows.points]
    keys = sorted({key for labels, _, _ in labelled for key in labels})
    factory = {COUNTER: CounterMetricFamily, HISTOGRAM: HistogramMetricFamily}.get(kind, GaugeMetricFamily)
    family = factory(name, description, labels=keys, unit=unit)
    for labels, point, rows in labelled:
        values = [labels.get(key, "") for key in keys]
        if kind == HISTOGRAM:
            family.add_metric(values, _buckets(rows.bounds, point[1], point[3]), point[2])
        else:
            family.add_metric(values, point[1])
    return family


def _labels(rows: MetricRows, attributes: dict[str, Any]) -> dict[str, str]:
    labels = dict(zip(SCOPE_LABELS, rows.scope, strict=True))
    for key, value in attributes.items():
        labels[sanitize_attribute(key)] = _label_value(value)
    return labels


def _label_value(value: Any) -> str:
    """As the OTel exporter writes one: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _buckets(bounds: list[float], counts: list[int], exemplars: list[list[Any]]) -> list[list[Any]]:
    by_bucket = {row[0]: Exemplar({"trace_id": row[3], "span_id": row[4]}, row[1], row[2]) for row in exemplars}
    buckets: list[list[Any]] = []
    total = 0
    for i, count in enumerate(counts):
        total += count
        bucket: list[Any] = [f"{bounds[i]}" if i < len(bounds) else "+Inf", total]
        if i in by_bucket:
            bucket.append(by_bucket[i])
        buckets.append(bucket)
    return buckets
