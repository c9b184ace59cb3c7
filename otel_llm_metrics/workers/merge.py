"""Adds up the workers' snapshots the way each instrument means it (``catalogue.across_workers``).

Counters and histograms: every worker that ever served, dead ones included, so a crash is no
counter reset. Up-down counters (in flight, pool sizes): live workers only. Gauges and process
metrics: live workers, one series each with ``process.pid``. Machine-wide metrics: the serving
worker's own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from operator import add
from typing import Any

from ..catalogue import Across, across_workers
from .snapshot import GAUGE, HISTOGRAM, UPDOWN, MetricRows, Snapshot

logger = logging.getLogger(__name__)
PID_ATTRIBUTE = "process.pid"  # the label that tells workers apart (process_pid in Prometheus)


@dataclass(frozen=True)
class Source:
    snapshot: Snapshot
    alive: bool
    serving: bool = False  # the process that renders the endpoint


def merge(sources: Iterable[Source]) -> list[MetricRows]:
    """One ``MetricRows`` per instrument, points with equal attributes added up."""
    merged: dict[tuple[Any, ...], tuple[MetricRows, dict[tuple[Any, ...], list[Any]]]] = {}
    for source in sources:
        for rows in source.snapshot.metrics:
            across = across_workers(rows.name, is_gauge=rows.kind == GAUGE)
            if not _counts(across, rows.kind, source):
                continue
            identity = (rows.scope, rows.name, rows.kind)
            entry = merged.get(identity)
            if entry is None:
                entry = merged[identity] = (MetricRows(rows.scope, rows.name, rows.description, rows.unit, rows.kind,
                                                       rows.bounds), {})
            target, points = entry
            if rows.kind == HISTOGRAM and rows.bounds != target.bounds:
                logger.warning("otel_llm_metrics: %s has other buckets in pid %s; its numbers are left out",
                               rows.name, source.snapshot.pid)
                continue
            for point in rows.points:
                attributes = point[0]
                if across is Across.PER_WORKER:
                    attributes = {**attributes, PID_ATTRIBUTE: source.snapshot.pid}
                key = _key(attributes)
                known = points.get(key)
                if known is None:
                    points[key] = _copy(point, attributes)
                elif rows.kind == HISTOGRAM:
                    _add_histogram(known, point)
                else:
                    known[1] += point[1]
    for target, points in merged.values():
        target.points = list(points.values())
    return [target for target, _ in merged.values()]


def server_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """A worker's resource without what names that worker alone (its instance id, its pid)."""
    return {key: value for key, value in resource.items()
            if key != "service.instance.id" and not key.startswith("process.")}


def _counts(across: Across, kind: str, source: Source) -> bool:
    """Whether this source's numbers of this instrument belong in the sum."""
    if across is Across.ONE:
        return source.serving
    if across is Across.PER_WORKER or kind in (UPDOWN, GAUGE):
        return source.alive  # a dead worker has nothing in flight and no memory
    return True


def _key(attributes: dict[str, Any]) -> tuple[Any, ...]:
    """Snapshots keep attributes in sorted order (snapshot.rows_of), so their items are the key."""
    try:
        return tuple(attributes.items())
    except TypeError:  # hashing failed on a list value
        return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in attributes.items())


def _copy(point: list[Any], attributes: dict[str, Any]) -> list[Any]:
    if len(point) == 2:
        return [attributes, point[1]]
    return [attributes, list(point[1]), point[2], list(point[3])]


def _add_histogram(known: list[Any], point: list[Any]) -> None:
    known[1] = list(map(add, known[1], point[1]))
    known[2] += point[2]
    if point[3]:
        newest = {row[0]: row for row in known[3]}
        for row in point[3]:
            if row[0] not in newest or row[2] > newest[row[0]][2]:
                newest[row[0]] = row
        known[3] = list(newest.values())
