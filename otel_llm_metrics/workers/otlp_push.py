"""Over OTLP, one stream per server: the worker that holds the server directory's lock pushes the merged view of
all its workers (the one the embedded endpoint serves), under one ``service.instance.id`` for the server.

Why: per-worker streams multiply series by the number of workers, reset counters at every worker replacement,
and lose a SIGKILLed worker's last interval. The merged view keeps dead workers' totals, so what is pushed is
exact and never goes back, through replacements and SIGKILLs.

How: each OTLP periodic reader of a server's worker keeps its schedule and exporter, but its collection is
replaced. In the lock's holder it returns the merged view, converted back to the SDK's ``MetricsData``; in the
other workers it returns nothing, so they push no metrics at all (their spans and logs are untouched). Delta
temporality is computed from the merged view against the totals pushed last, kept in the directory so that
the next holder goes on from them. At exit every worker hands its last numbers over before the holder's last
push, and a sibling that exits after the holder pushes once more (``Endpoint.hold_for_final``).

A process that serves alone, a server of one worker, a reader with exponential histograms (not merged here)
and ``OTEL_LLM_METRICS_OTLP_PER_WORKER=true`` keep per-process streams, as before.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
from opentelemetry.sdk.metrics._internal.instrument import _Counter, _Histogram, _UpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ..bridge import exponential_limits
from ..config import Settings
from ..process_role import ROLE, Role, gate, role_of_command
from ..providers import _parent_argv
from .directory import server_master
from .snapshot import COUNTER, GAUGE, HISTOGRAM, MetricRows

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

    from ..bridge import MetricsBridge
    from .endpoint import Endpoint

logger = logging.getLogger(__name__)
INSTANCE_ID = "service.instance.id"
_OTLP_MODULES = "opentelemetry.exporter.otlp"
Collect = Callable[..., MetricsData | None]


def merged_push(settings: Settings, *, attached: bool, bridge: MetricsBridge,
                endpoint: Callable[[], Endpoint | None]) -> MergedPush | None:
    """The merged push of this process, where it may apply: OTLP on a pipeline of ours, not per worker."""
    if settings.otlp_per_worker or attached or "otlp" not in settings.metrics_exporters:
        return None
    return MergedPush(bridge, endpoint)


def server_instance_id(master: int) -> str:
    """One id per server: the pod's name under Kubernetes (``POD_NAME`` from the downward API, else the
    ``HOSTNAME`` Kubernetes sets to it), elsewhere the host's name and the server's master pid."""
    if os.environ.get("POD_NAME"):
        return os.environ["POD_NAME"]
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("HOSTNAME"):
        return os.environ["HOSTNAME"]
    return f"{socket.gethostname()}-{master}"


@dataclass
class _ReaderPush:
    """One OTLP reader's side of the merged push: its temporalities and, for delta, the totals pushed last."""

    slot: int
    temporality: dict[str, AggregationTemporality]
    lock: threading.Lock = field(default_factory=threading.Lock)
    held_last: bool = False  # this process pushed the previous collection (else it reads the directory's totals)
    pushed: dict[str, Any] = field(default_factory=dict)
    pushed_at: int = 0

    @property
    def delta(self) -> bool:
        return AggregationTemporality.DELTA in self.temporality.values()


class MergedPush:
    def __init__(self, bridge: MetricsBridge, endpoint: Callable[[], Endpoint | None]) -> None:
        self._bridge = bridge
        self._endpoint = endpoint
        self._readers: list[MetricReader] = []
        self._states: list[_ReaderPush] = []
        self._configured_id = OTELResourceDetector().detect().attributes.get(INSTANCE_ID)
        self._spawned_by_server: bool | None = None

    @property
    def active(self) -> bool:
        """Whether any reader of this process is taken over (an OTLP periodic reader with explicit buckets)."""
        return bool(self._readers)

    # -- the readers ----------------------------------------------------------------------------------------
    def wrap(self, reader: MetricReader, collect: Collect, created_in_pid: int) -> Collect:
        """``collect`` for ``reader``: unchanged unless it is an OTLP periodic reader; then per process until
        this process is known to be one of several workers, and from then on the merged view or nothing."""
        if not isinstance(reader, PeriodicExportingMetricReader):
            return collect
        if not type(getattr(reader, "_exporter", None)).__module__.startswith(_OTLP_MODULES):
            return collect
        aggregation = getattr(reader, "_instrument_class_aggregation", {}).get(_Histogram)
        if exponential_limits(aggregation) is not None:
            logger.info("otel_llm_metrics: exponential histograms are not merged across workers; each worker "
                        "pushes its own OTLP stream")
            return collect
        chosen = getattr(reader, "_instrument_class_temporality", {})
        state = _ReaderPush(len(self._states), {
            kind: chosen.get(cls, AggregationTemporality.CUMULATIVE)
            for kind, cls in ((COUNTER, _Counter), (HISTOGRAM, _Histogram), ("updown", _UpDownCounter))})
        self._readers.append(reader)
        self._states.append(state)

        def merged_collect(reader_: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
            endpoint = self._endpoint()
            if endpoint is None or not endpoint.ready:
                if self._server_worker(created_in_pid):
                    return None  # a server's worker before its hand-over starts: one stream or several, not yet known
                return collect(reader_, timeout_millis=timeout_millis)
            if endpoint.directory is None or not endpoint.several_workers():
                return collect(reader_, timeout_millis=timeout_millis)
            if not endpoint.holding:
                return None  # the holder pushes this worker's numbers
            return self._merged(endpoint, state)

        return merged_collect

    def _server_worker(self, created_in_pid: int) -> bool:
        """Whether this process is, or is about to be, a worker of a server: it serves with a master above it, or
        a server's command spawned it (uvicorn's and hypercorn's workers, before their start-up says so)."""
        if ROLE.role is Role.SERVING:
            return server_master(created_in_pid) is not None
        if ROLE.role is not Role.PLAIN or not ROLE.spawned:
            return False
        if self._spawned_by_server is None:
            argv = _parent_argv()
            self._spawned_by_server = bool(argv) and role_of_command(argv) is Role.STARTING
        return self._spawned_by_server

    def hand_over_reader(self, provider: MeterProvider, created_in_pid: int) -> InMemoryMetricReader | None:
        """A cumulative reader for the workers' hand-over, added where this process serves as a server's worker
        (nowhere else: a process that serves alone reads nothing more than before)."""
        if not self._readers or ROLE.role is not Role.SERVING or server_master(created_in_pid) is None:
            return None
        reader = InMemoryMetricReader()
        provider.add_metric_reader(reader)
        self._bridge.attach(reader)
        reader._collect = gate(reader._collect, ROLE)  # type: ignore[attr-defined]
        return reader

    # -- the last push ----------------------------------------------------------------------------------------
    def final(self, deadline: float) -> None:
        """At exit (``deadline`` monotonic): this worker's last numbers handed over, then pushed merged by this
        worker if it holds the lock or the holder exits before it; never raises."""
        endpoint = self._endpoint()
        if not self._readers or endpoint is None or endpoint.directory is None:
            return
        try:
            if not endpoint.several_workers() or not endpoint.hold_for_final(deadline):
                return
            for reader in self._readers:
                reader.collect(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)
        except Exception:
            logger.exception("otel_llm_metrics: the server's last merged push failed")
        finally:
            endpoint.release_after_final()

    # -- the merged view as the SDK's data ---------------------------------------------------------------------
    def _merged(self, endpoint: Endpoint, state: _ReaderPush) -> MetricsData | None:
        directory = endpoint.directory
        assert directory is not None
        with state.lock:
            metrics, resource = endpoint.aggregate()
            now = time.time_ns()
            start = int(directory.master_started * 1e9)
            if state.delta and not state.held_last:  # taking over: go on from what the last holder pushed
                last = directory.read_pushed(state.slot) or {}
                state.pushed, state.pushed_at = last.get("points", {}), last.get("time", start)
            state.held_last = True
            pushed: dict[str, Any] = {}
            data = metrics_data(metrics, self._resource(resource, directory.master or 0), state.temporality,
                                start, max(state.pushed_at, start), now, state.pushed, pushed)
            if state.delta:
                state.pushed, state.pushed_at = pushed, now
                directory.write_pushed(state.slot, {"time": now, "points": pushed})
            return data

    def _resource(self, attributes: dict[str, Any], master: int) -> Resource:
        return Resource({**attributes, INSTANCE_ID: self._configured_id or server_instance_id(master)})


def metrics_data(rows: list[MetricRows], resource: Resource, temporality: dict[str, AggregationTemporality],
                 start: int, delta_start: int, now: int, before: dict[str, Any], after: dict[str, Any]
                 ) -> MetricsData | None:
    """Merged rows as one ``MetricsData`` an exporter takes. Counters and histograms are cumulative from
    ``start`` or, where ``temporality`` says delta, the gain over ``before`` (the totals pushed last, from
    ``delta_start``); ``after`` receives the totals now. Up-down counters are cumulative, gauges gauges."""
    scopes: dict[tuple[str, str, str], list[Metric]] = {}
    for metric in rows:
        data = _data(metric, temporality, start, delta_start, now, before, after)
        if data is not None:
            scopes.setdefault(metric.scope, []).append(Metric(metric.name, metric.description, metric.unit, data))
    if not scopes:
        return None
    scope_metrics = [ScopeMetrics(InstrumentationScope(name, version or None, schema_url or None), metrics,
                                  schema_url) for (name, version, schema_url), metrics in scopes.items()]
    return MetricsData([ResourceMetrics(resource, scope_metrics, "")])


def _data(rows: MetricRows, temporality: dict[str, AggregationTemporality], start: int, delta_start: int, now: int,
          before: dict[str, Any], after: dict[str, Any]) -> Any:
    if rows.kind == GAUGE:
        gauges = [NumberDataPoint(point[0], start, now, point[1]) for point in rows.points]
        return Gauge(gauges) if gauges else None
    if rows.kind == HISTOGRAM:
        return _histogram(rows, temporality[HISTOGRAM], start, delta_start, now, before, after)
    monotonic = rows.kind == COUNTER
    chosen = temporality[COUNTER] if monotonic else AggregationTemporality.CUMULATIVE
    points = []
    for attributes, value in rows.points:
        begins = start
        if chosen == AggregationTemporality.DELTA:
            key = _key(rows, attributes)
            after[key] = value
            last = before.get(key, 0)
            value, begins = (value - last if value >= last else value), delta_start
            if not value:
                continue
        points.append(NumberDataPoint(attributes, begins, now, value))
    return Sum(points, chosen, monotonic) if points else None


def _histogram(rows: MetricRows, chosen: AggregationTemporality, start: int, delta_start: int, now: int,
               before: dict[str, Any], after: dict[str, Any]) -> Histogram | None:
    points = []
    for attributes, counts, total, exemplar_rows in rows.points:
        begins = start
        if chosen == AggregationTemporality.DELTA:
            key = _key(rows, attributes)
            after[key] = [counts, total]
            last = before.get(key)
            if last is not None and all(a >= b for a, b in zip(counts, last[0], strict=False)):
                counts, total = [a - b for a, b in zip(counts, last[0], strict=False)], total - last[1]
            begins = delta_start
            if not any(counts):
                continue
        exemplars = [Exemplar({}, value, int(at * 1e9), int(span_id, 16), int(trace_id, 16))
                     for _, value, at, trace_id, span_id in exemplar_rows]
        points.append(HistogramDataPoint(attributes, begins, now, sum(counts), total, counts, rows.bounds,
                                         None, None, exemplars))  # type: ignore[arg-type]  # min, max: not kept
    return Histogram(points, chosen) if points else None


def _key(rows: MetricRows, attributes: dict[str, Any]) -> str:
    return json.dumps([rows.scope, rows.name, attributes], separators=(",", ":"), default=str)
