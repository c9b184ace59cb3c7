"""A worker's cumulative metrics as plain JSON-ready data: what it hands to the worker that serves.

Only what the merge and the Prometheus exposition need is kept: names, units, kinds, attributes,
values, bucket counts and the newest exemplar per bucket.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum

COUNTER, UPDOWN, GAUGE, HISTOGRAM = "counter", "updown", "gauge", "histogram"
FORMAT = 1

Attributes = dict[str, Any]
# [bucket index, value, unix time in seconds, trace id (32 hex), span id (16 hex)]
ExemplarRow = list[Any]


@dataclass
class MetricRows:
    """One instrument of one scope: ``points`` are [attributes, value] or, for a histogram,
    [attributes, bucket counts, sum, exemplar rows]."""

    scope: tuple[str, str, str]  # name, version, schema url
    name: str
    description: str
    unit: str
    kind: str
    bounds: list[float] = field(default_factory=list)
    points: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"scope": list(self.scope), "name": self.name, "description": self.description, "unit": self.unit,
                "kind": self.kind, "bounds": self.bounds, "points": self.points}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricRows:
        return cls(tuple(data["scope"]), data["name"], data["description"], data["unit"], data["kind"],  # type: ignore[arg-type]
                   data["bounds"], data["points"])


@dataclass
class Snapshot:
    """One process's metrics at ``written``; ``pid`` and ``started`` tell whether it still lives."""

    pid: int
    started: float
    written: float
    resource: Attributes
    metrics: list[MetricRows]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "pid": self.pid, "started": self.started, "written": self.written,
                "resource": self.resource, "metrics": [m.to_json() for m in self.metrics]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown snapshot format {data.get('format')!r}")
        return cls(data["pid"], data["started"], data["written"], data["resource"],
                   [MetricRows.from_json(m) for m in data["metrics"]])


def rows_of(data: MetricsData | None) -> tuple[Attributes, list[MetricRows]]:
    """The resource attributes and every instrument of a cumulative collection."""
    if data is None:
        return {}, []
    resource: Attributes = {}
    rows: list[MetricRows] = []
    for resource_metrics in data.resource_metrics:
        resource.update(_plain(resource_metrics.resource.attributes))
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            identity = (scope.name or "", scope.version or "", scope.schema_url or "")
            for metric in scope_metrics.metrics:
                converted = _metric_rows(identity, metric)
                if converted is not None:
                    rows.append(converted)
    return resource, rows


def _metric_rows(scope: tuple[str, str, str], metric: Any) -> MetricRows | None:
    data = metric.data
    if isinstance(data, Histogram):
        rows = MetricRows(scope, metric.name, metric.description or "", metric.unit or "", HISTOGRAM)
        for point in data.data_points:
            bounds = list(point.explicit_bounds)
            rows.bounds = rows.bounds or bounds
            exemplars = [[bisect_left(bounds, e.value), e.value, e.time_unix_nano / 1e9,
                          f"{e.trace_id:032x}", f"{e.span_id:016x}"]
                         for e in point.exemplars if e.trace_id]
            rows.points.append([_plain(point.attributes), list(point.bucket_counts), point.sum, exemplars])
        return rows
    if isinstance(data, Sum):
        kind = COUNTER if data.is_monotonic else UPDOWN
    elif isinstance(data, Gauge):
        kind = GAUGE
    else:  # exponential histograms: nothing we produce; the endpoint leaves them out
        return None
    return MetricRows(scope, metric.name, metric.description or "", metric.unit or "", kind, [],
                      [[_plain(point.attributes), point.value] for point in data.data_points])


def _plain(attributes: Any) -> Attributes:
    """Attributes as JSON keeps them (sequences as lists), sorted by key: equal sets, equal items."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in sorted((attributes or {}).items())}
