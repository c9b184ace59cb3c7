"""Over OTLP, one stream per multi-worker server with exact totals (issue 30), at a real OTLP receiver.

uvicorn --workers 4 and gunicorn -w 4 under ``opentelemetry-instrument``, unmodified app, requests over fresh
connections (so they spread over the workers). The worker holding the server directory's lock pushes every
worker's numbers merged, under one service.instance.id; a SIGKILLed holder is replaced and the totals stay exact
and never go back; at SIGTERM every request is delivered; ``OTEL_LLM_METRICS_OTLP_PER_WORKER=true`` gives each
worker its stream again. Spans stay per process.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from tests.integration.servers import BIN, GUNICORN_STOP, ROOT, Process, free_port, wait_for
from tests.otlp_receiver import Receiver, attributes_of

pytestmark = pytest.mark.integration
ROUTE = "/hello/{name}"
DURATION = "http.server.request.duration"
INSTANCE_ID = "service.instance.id"
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_runs = iter(range(1_000_000))


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.stop()


@dataclass
class Point:
    instance: str
    resource: dict
    temporality: int
    start: int
    time: int
    count: int


class Server(Process):
    """A multi-worker server exporting OTLP/HTTP to the receiver under its own path prefix."""

    def __init__(self, kind: str, workers: int, receiver: Receiver, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.prefix = f"/merged-{next(_runs)}"
        self.workers_dir = tmp_path / "workers"
        app = "tests.integration.plain_apps:starlette_app"
        if kind == "uvicorn":
            command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                       "--workers", str(workers), "--timeout-worker-healthcheck", "60"]
        else:
            command = [str(BIN / "gunicorn"), app, "-b", f"127.0.0.1:{self.port}", "-w", str(workers),
                       "-k", "uvicorn.workers.UvicornWorker", "--graceful-timeout", "20", "--timeout", "120"]
            self.stop_signal = GUNICORN_STOP
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        super().__init__([str(BIN / "opentelemetry-instrument"), *command], {
            **base, "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url + self.prefix, "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai", "OTEL_LLM_METRICS_WORKERS_DIR": str(self.workers_dir),
            "OTEL_SERVICE_NAME": f"merged-{kind}", **env})
        self.receiver = receiver
        self.url = f"http://127.0.0.1:{self.port}"
        self.answered = 0
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.url, headers={"connection": "close"}, timeout=20)

    def send(self, count: int, threads: int = 8) -> collections.Counter:
        def one(_: int) -> str:
            response = self._client.get("/hello/x")
            assert response.status_code == 200
            with self._lock:
                self.answered += 1
            return response.headers["x-worker-pid"]
        with ThreadPoolExecutor(threads) as pool:
            return collections.Counter(pool.map(one, range(count)))

    def wait_workers(self, workers: int) -> set[int]:
        seen: collections.Counter = collections.Counter()

        def all_answer() -> bool:
            nonlocal seen
            if self.popen.poll() is not None:
                pytest.fail(f"server exited with {self.popen.returncode}:\n{self.log()[-6000:]}")
            seen = self.send(12 * workers)
            return len(seen) == workers
        wait_for(all_answer, f"all {workers} workers answering (last round: {dict(seen)})", deadline_s=90)
        return {int(pid) for pid in seen}

    def holder(self) -> int:
        (pusher,) = self.workers_dir.glob("*/pusher.json")
        return json.loads(pusher.read_text())["pid"]

    # -- what the receiver got --------------------------------------------------------------------------
    def exports(self) -> list:
        return [e.request for e in self.receiver.exports_under(self.prefix) if e.signal == "metrics"]

    def points(self) -> list[Point]:
        """The route's request counts, one per export and stream (points of one export summed)."""
        found = []
        for request in self.exports():
            for rm in request.resource_metrics:
                resource = attributes_of(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != DURATION:
                            continue
                        data = metric.histogram
                        mine = [p for p in data.data_points if attributes_of(p.attributes).get("http.route") == ROUTE]
                        if mine:
                            found.append(Point(resource.get(INSTANCE_ID), resource, data.aggregation_temporality,
                                               mine[0].start_time_unix_nano, mine[0].time_unix_nano,
                                               sum(p.count for p in mine)))
        return found

    def total(self) -> int:
        """Requests counted at the receiver: deltas summed; each cumulative stream at its latest point."""
        latest: dict[str, Point] = {}
        deltas = 0
        for point in self.points():
            if point.temporality == DELTA:
                deltas += point.count
            elif point.instance not in latest or point.time >= latest[point.instance].time:
                latest[point.instance] = point
        return deltas + sum(p.count for p in latest.values())

    def instances(self) -> set[str]:
        return {attributes_of(rm.resource.attributes).get(INSTANCE_ID)
                for request in self.exports() for rm in request.resource_metrics}

    def series(self) -> int:
        """Distinct series in the exports so far: (instance, scope, metric, point attributes)."""
        keys = set()
        for request in self.exports():
            for rm in request.resource_metrics:
                instance = attributes_of(rm.resource.attributes).get(INSTANCE_ID)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        for point in data.data_points:
                            keys.add((instance, sm.scope.name, metric.name,
                                      json.dumps(attributes_of(point.attributes), sort_keys=True)))
        return len(keys)

    def wait_total(self, what: str) -> None:
        wait_for(lambda: self.total() == self.answered, f"{what}: {self.answered} requests at the receiver "
                 f"(last: {self.total()})", deadline_s=30)

    def terminate(self) -> None:
        self.popen.send_signal(signal.SIGTERM)  # to the master only, as an orchestrator does
        assert self.popen.wait(60) in (0, -signal.SIGTERM), self.log()[-6000:]

    def stop(self, timeout: float = 10.0) -> int | None:
        self._client.close()
        return super().stop(timeout)


def _assert_never_back(points: list[Point]) -> None:
    ordered = sorted((p for p in points if p.temporality != DELTA), key=lambda p: p.time)
    counts = [p.count for p in ordered]
    assert counts == sorted(counts), f"the server's cumulative count went back: {counts}"
    assert len({p.start for p in ordered}) <= 1, "one start time for the server's stream, whoever pushes"


@pytest.mark.parametrize(("kind", "temporality"), [
    ("uvicorn", "cumulative"), ("gunicorn", "cumulative"), ("gunicorn", "delta")])
def test_one_stream_per_server_exact_through_a_holder_sigkill(receiver, tmp_path, kind, temporality):
    workers = 4
    server = Server(kind, workers, receiver, tmp_path,
                    {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": temporality})
    try:
        first = server.wait_workers(workers)
        assert len(server.send(400)) == workers, "the load reached every worker"
        server.wait_total("before the kill")
        assert len(server.instances()) == 1, f"one stream per server: {server.instances()}"
        (resource,) = {json.dumps(p.resource, sort_keys=True) for p in server.points()}
        assert "process.pid" not in json.loads(resource), resource

        holder = server.holder()
        assert holder in first
        os.kill(holder, signal.SIGKILL)
        wait_for(lambda: server.holder() != holder, "another worker holding the lock", deadline_s=30)
        after = server.wait_workers(workers)  # the master has started a replacement
        assert holder not in after
        server.send(400)
        server.wait_total("after the holder's SIGKILL")  # nothing lost, nothing counted twice
        assert len(server.instances()) == 1, f"still one stream: {server.instances()}"
        _assert_never_back(server.points())
        temporalities = {p.temporality for p in server.points()}
        assert temporalities == ({DELTA} if temporality == "delta" else {
            AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE}), temporalities
        server.terminate()
        assert server.total() == server.answered
        _assert_never_back(server.points())
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_at_sigterm_every_request_is_delivered_in_the_one_stream(receiver, tmp_path, kind):
    """A 10-minute interval: only the last pushes deliver. Spans stay per worker."""
    server = Server(kind, 4, receiver, tmp_path, {"OTEL_METRIC_EXPORT_INTERVAL": "600000",
                                                  "OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "200"})
    try:
        pids = server.wait_workers(4)
        server.send(200)
        server.terminate()
        wait_for(lambda: server.total() == server.answered,
                 f"{server.answered} requests at the receiver after SIGTERM (got {server.total()})")
        assert len(server.instances()) == 1, server.instances()
        span_pids = {attributes_of(rs.resource.attributes).get("process.pid")
                     for e in receiver.exports_under(server.prefix) if e.signal == "traces"
                     for rs in e.request.resource_spans}
        assert span_pids and span_pids <= pids, f"spans from each worker as itself: {span_pids} vs {pids}"
    finally:
        server.stop()


def test_per_worker_mode_gives_each_worker_its_own_stream(receiver, tmp_path):
    server = Server("gunicorn", 4, receiver, tmp_path, {"OTEL_LLM_METRICS_OTLP_PER_WORKER": "true"})
    try:
        pids = server.wait_workers(4)
        server.send(200)
        server.wait_total("per worker")
        by_instance = {p.instance: p.resource.get("process.pid") for p in server.points()}
        assert set(by_instance.values()) == pids, f"one stream per worker: {by_instance} vs {pids}"
        assert len(by_instance) == len(pids)
    finally:
        server.stop()


def test_series_at_the_receiver_are_the_workers_union_not_n_times(receiver, tmp_path):
    """8 workers, per-worker streams then the merged one, the same load: the request series are not multiplied."""
    counts = {}
    for mode, env in (("per-worker", {"OTEL_LLM_METRICS_OTLP_PER_WORKER": "true"}), ("merged", {})):
        server = Server("gunicorn", 8, receiver, tmp_path / mode, env)
        try:
            server.wait_workers(8)
            server.send(400)
            server.wait_total(mode)
            duration_series = {(p.instance) for p in server.points()}
            counts[mode] = (server.series(), len(duration_series))
        finally:
            server.stop()
    print(f"\nseries at the receiver, 8 workers: {counts}")
    assert counts["merged"][1] == 1 and counts["per-worker"][1] == 8, counts
    assert counts["merged"][0] < counts["per-worker"][0] / 2, counts
