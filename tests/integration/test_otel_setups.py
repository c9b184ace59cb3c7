"""Real OpenTelemetry set-ups around the package, observed at a real OTLP receiver (issue 19).

A FastAPI gateway (tests/integration/otel_setups_gateway.py) relays each request to a local upstream with
httpx and logs one line per request. It runs in a real uvicorn process, exporting metrics, traces and logs
over OTLP/HTTP to a receiver in this process that decodes the protobuf. After N requests and SIGTERM, the
receiver must show what docs/opentelemetry-setup.md promises: every request counted once, one resource per
process, one server span per request with its httpx client span inside it, each log record with its request's
trace id, and no metric name under two scopes. Then the table: each OTEL_* variable the SDK honours, observed
at the receiver.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests import local_http, otlp_receiver
from tests.integration.conftest import distro_env
from tests.integration.servers import BIN, ROOT, free_port, wait_for
from tests.otlp_receiver import Export, attributes_of

pytestmark = pytest.mark.integration

N = 20  # requests per scenario run
TABLE_N = 5  # requests per table case
DURATION = "http.server.request.duration"
ROUTE = "/relay/{n}"  # the gateway's route (otel_setups_gateway.py)
INSTANCE_ID = "service.instance.id"
HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"
_runs = itertools.count()


# -- the OTLP receivers ----------------------------------------------------------------------------------------------

class Receiver(otlp_receiver.Receiver):
    """The shared receiver; every run posts under its own path prefix."""

    def of(self, prefix: str) -> Received:
        return Received(self.exports_under(prefix))


class GrpcReceiver:
    """OTLP/gRPC for metrics and traces on a free loopback port (one per case that needs it)."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self.exports: list[Export] = []
        receiver = self

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802 - gRPC's name
                receiver.exports.append(Export("grpc", dict(context.invocation_metadata()), "metrics", request))
                return ExportMetricsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - gRPC's name
                receiver.exports.append(Export("grpc", dict(context.invocation_metadata()), "traces", request))
                return ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.url = f"http://127.0.0.1:{port}"

    def received(self) -> Received:
        return Received(list(self.exports))

    def stop(self) -> None:
        self.server.stop(0)


@dataclass
class Received:
    """What one run exported, flattened."""

    exports: list[Export]
    metrics: list[tuple[dict, str, object]] = field(default_factory=list)  # resource, scope, Metric
    spans: list[tuple[dict, str, Span]] = field(default_factory=list)
    logs: list[tuple[dict, str, object]] = field(default_factory=list)  # resource, scope, LogRecord
    resources: list[tuple[str, dict]] = field(default_factory=list)  # signal, resource attributes

    def __post_init__(self) -> None:
        for export in self.exports:
            request = export.request
            if export.signal == "metrics":
                for rm in request.resource_metrics:
                    resource = attributes_of(rm.resource.attributes)
                    self.resources.append(("metrics", resource))
                    self.metrics += [(resource, sm.scope.name, m) for sm in rm.scope_metrics for m in sm.metrics]
            elif export.signal == "traces":
                for rs in request.resource_spans:
                    resource = attributes_of(rs.resource.attributes)
                    self.resources.append(("traces", resource))
                    self.spans += [(resource, ss.scope.name, s) for ss in rs.scope_spans for s in ss.spans]
            else:
                for rl in request.resource_logs:
                    resource = attributes_of(rl.resource.attributes)
                    self.resources.append(("logs", resource))
                    self.logs += [(resource, sl.scope.name, r) for sl in rl.scope_logs for r in sl.log_records]

    def signals(self) -> set[str]:
        return {e.signal for e in self.exports}

    def duration_points(self):
        """(resource, scope, temporality, point) of http.server.request.duration on the gateway's route."""
        for resource, scope, metric in self.metrics:
            if metric.name != DURATION:
                continue
            data = getattr(metric, metric.WhichOneof("data"))
            for point in data.data_points:
                if attributes_of(point.attributes).get("http.route") == ROUTE:
                    yield resource, scope, data.aggregation_temporality, point

    def counts_by_scope(self) -> dict[str, int]:
        """Requests counted on the route, per scope: deltas summed, cumulative streams at their last value."""
        deltas: dict[str, int] = {}
        last: dict[tuple, tuple[int, int]] = {}
        for resource, scope, temporality, point in self.duration_points():
            if temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA:
                deltas[scope] = deltas.get(scope, 0) + point.count
            else:
                key = (resource.get(INSTANCE_ID), scope, tuple(sorted(attributes_of(point.attributes).items())))
                if key not in last or point.time_unix_nano >= last[key][0]:
                    last[key] = (point.time_unix_nano, point.count)
        counts = dict(deltas)
        for (_, scope, _), (_, count) in last.items():
            counts[scope] = counts.get(scope, 0) + count
        return counts

    def server_spans(self) -> list[Span]:
        return [s for _, _, s in self.spans if s.kind == Span.SPAN_KIND_SERVER
                and attributes_of(s.attributes).get("http.route", s.name.split(" ")[-1]) == ROUTE]

    def gateway_logs(self) -> list:
        return [r for _, scope, r in self.logs if scope == "gateway"]

    def scopes_by_name(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for _, scope, metric in self.metrics:
            found.setdefault(metric.name, set()).add(scope)
        return found


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream():
    """The gateway's upstream: answers every GET with a small JSON body."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- one server run ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    prefix: str  # this run's path under the receiver
    port: int
    popen: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _serve(receiver: Receiver, upstream: str, env: dict[str, str], *, zero_code: bool = True,
           target: str = "tests.integration.otel_setups_gateway:app", workers: int = 0) -> Run:
    """The gateway under uvicorn, or gunicorn with ``workers`` (under ``opentelemetry-instrument`` when
    ``zero_code``), listening."""
    prefix = f"/run-{next(_runs)}"
    port = free_port()
    command = [str(BIN / "uvicorn"), target, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    if workers:
        command = [str(BIN / "gunicorn"), target, "-b", f"127.0.0.1:{port}", "-w", str(workers),
                   "-k", "uvicorn.workers.UvicornWorker", "--graceful-timeout", "10"]
    if zero_code:
        command = [str(BIN / "opentelemetry-instrument"), *command]
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    python_path = os.pathsep.join(p for p in (env.pop("PYTHONPATH", ""), str(ROOT), os.environ.get("PYTHONPATH", ""))
                                  if p)
    full_env = {**base, "PYTHONPATH": python_path, "GATEWAY_UPSTREAM": upstream,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url + prefix,
                "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
                "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true", "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",  # its import takes ~1 s; no OpenAI client here
                **{k: v.replace("{receiver}", receiver.url + prefix) for k, v in env.items()}}
    log_path = Path(tempfile.mkstemp(prefix="otel-setups-", suffix=".log")[1])
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(command, env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    run = Run(prefix, port, popen, log_path)

    def listening() -> bool:
        if popen.poll() is not None:
            pytest.fail(f"the gateway exited with {popen.returncode} before listening:\n{run.log()}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, "the gateway listening", 30)
    except BaseException:
        _kill(run)
        log_path.unlink(missing_ok=True)
        raise
    return run


def _requests(run: Run, numbers: range) -> None:
    with httpx.Client(base_url=run.url, timeout=10) as client:
        for n in numbers:
            response = client.get(f"/relay/{n}")
            assert response.status_code == 200 and response.json() == {"n": n, "upstream": 200}, response.text


def _stop(run: Run, status: int = -signal.SIGTERM) -> None:
    """SIGTERM, as an orchestrator sends it; uvicorn re-raises it once its shutdown is done, gunicorn exits 0."""
    run.popen.send_signal(signal.SIGTERM)
    try:
        code = run.popen.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the gateway did not exit within 30 s of SIGTERM:\n{run.log()}")
    assert code == status, f"exit status {code}:\n{run.log()}"
    assert "Traceback" not in run.log(), run.log()


def _kill(run: Run) -> None:
    if run.popen.poll() is None:
        os.killpg(run.popen.pid, signal.SIGKILL)
        run.popen.wait(10)


def _serve_and_stop(receiver: Receiver, upstream: str, env: dict[str, str], requests: int,
                    during: Callable[[Run, Receiver], None] | None = None, **serve: object) -> tuple[Run, Received]:
    run = _serve(receiver, upstream, env, **serve)
    try:
        if during is None:
            _requests(run, range(requests))
        else:
            during(run, receiver)
        _stop(run, 0 if serve.get("workers") else -signal.SIGTERM)
    finally:
        _kill(run)
        run.log_path.unlink(missing_ok=True)
    errors = [error for error in receiver.errors if error[0].startswith(run.prefix + "/")]
    assert not errors, f"exports the receiver could not decode: {errors}"
    return run, receiver.of(run.prefix)


# -- the promises -------------------------------------------------------------------------------------------------

def _trace_ids(spans: list[Span]) -> set[bytes]:
    return {s.trace_id for s in spans}


def _assert_counted_once(received: Received, n: int) -> None:
    counts = received.counts_by_scope()
    assert sum(counts.values()) == n, f"{n} requests counted once over all scopes; by scope: {counts}"


def _assert_one_resource(received: Received, run: Run) -> None:
    by_signal: dict[str, set] = {}
    for signal_name, resource in received.resources:
        by_signal.setdefault(signal_name, set()).add(resource.get(INSTANCE_ID))
    assert {"metrics", "traces"} <= set(by_signal), f"signals exported: {sorted(by_signal)}"
    every = set().union(*by_signal.values())
    assert len(every) == 1 and None not in every, f"one service.instance.id for the process, by signal: {by_signal}"
    pids = {resource.get("process.pid") for _, resource in received.resources} - {None}
    assert pids <= {run.popen.pid}, f"only the serving process ({run.popen.pid}) exports: {pids}"


def _assert_server_and_client_spans(received: Received, n: int) -> None:
    servers = received.server_spans()
    kinds = sorted((scope, Span.SpanKind.Name(s.kind), s.name) for _, scope, s in received.spans)
    assert len(servers) == n, f"one server span per request ({n}), got {len(servers)}; spans: {kinds}"
    assert len(_trace_ids(servers)) == n, "each request its own trace"
    by_id = {(s.trace_id, s.span_id): s for _, _, s in received.spans}
    clients = [(scope, s) for _, scope, s in received.spans if s.kind == Span.SPAN_KIND_CLIENT]
    for server in servers:
        inside = [(scope, s) for scope, s in clients if s.trace_id == server.trace_id]
        assert [scope for scope, _ in inside] == [HTTPX_SCOPE], (
            f"exactly one CLIENT span, httpx's, in the trace of {server.name}: {[(sc, s.name) for sc, s in inside]}")
        span, seen = inside[0][1], 0
        while span.span_id != server.span_id:  # walk up: the server span must be an ancestor
            parent = by_id.get((span.trace_id, span.parent_span_id))
            assert parent is not None and seen < 50, f"the httpx span {inside[0][1].name} is not under the server span"
            span, seen = parent, seen + 1
    orphans = [s.name for _, s in clients if s.trace_id not in _trace_ids(servers)]
    assert not orphans, f"CLIENT spans outside every request's trace: {orphans}"


def _assert_logs_in_their_traces(received: Received, n: int) -> None:
    records = received.gateway_logs()
    got, exports = len(records), sum(e.signal == "logs" for e in received.exports)
    others = [(scope, r.body.string_value[:120]) for _, scope, r in received.logs if scope != "gateway"]
    assert got == n, (f"{n} gateway records at the receiver (after the exit), got {got} in {exports} exports; "
                      f"other records: {others[:3]}")
    ids = [r.trace_id for r in records]
    server_ids = _trace_ids(received.server_spans())
    assert all(i in server_ids for i in ids), (
        f"each record carries its request's trace id: {[i.hex() for i in ids if i not in server_ids]} are none")
    assert len(set(ids)) == n, "one record per request's trace"


def _assert_no_name_twice(received: Received) -> None:
    twice = {name: sorted(scopes) for name, scopes in received.scopes_by_name().items() if len(scopes) > 1}
    assert not twice, f"metric names under two scopes: {twice}"


# Spans and log records wait in their batch processors until the exit (a delay longer than the run): what reaches
# the receiver of them was pushed at the exit. Metrics are pushed every 500 ms, and at the exit.
AT_EXIT = {"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BLRP_SCHEDULE_DELAY": "60000"}
GATEWAY = "tests.integration.otel_setups_gateway:app"
SCENARIOS = {
    # every installed instrumentation (httpx, system-metrics) with ours; the configurator chosen by default
    "ours-plus-bootstrap": lambda request: (AT_EXIT, True, GATEWAY),
    # the getting-started install: opentelemetry-distro's configurator builds the SDK, ours attaches to it
    "distro-configurator-chosen": lambda request: (
        {**AT_EXIT, **distro_env(request.getfixturevalue("distro_path"))}, True, GATEWAY),
    # the SDK built in the app's code before setup(), plain uvicorn
    "sdk-in-app-code": lambda request: (AT_EXIT, False, "tests.integration.otel_setups_gateway:sdk_app"),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_real_setup_exports_each_request_once_in_one_resource(scenario, receiver, upstream, request):
    env, zero_code, target = SCENARIOS[scenario](request)
    run, received = _serve_and_stop(receiver, upstream, env, N, zero_code=zero_code, target=target)
    failed = []  # every promise checked, so that a failure report says all that is wrong
    for promise in (lambda: _assert_counted_once(received, N), lambda: _assert_one_resource(received, run),
                    lambda: _assert_server_and_client_spans(received, N),
                    lambda: _assert_logs_in_their_traces(received, N), lambda: _assert_no_name_twice(received)):
        try:
            promise()
        except AssertionError as error:
            failed.append(str(error).split("\nassert ")[0])
    assert not failed, "\n".join(failed)


# -- the table: each OTEL_* variable, observed at the receiver ------------------------------------------------------

def _every_export_has_header(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    assert received.signals() == {"metrics", "traces", "logs"}
    missing = [(e.signal, e.headers) for e in received.exports if e.headers.get("x-table-token") != "secret-1"]
    assert not missing, f"exports without the header: {missing[:3]}"


def _every_export_gzipped(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    assert received.signals() == {"metrics", "traces", "logs"}
    plain = [(e.signal, e.headers.get("content-encoding")) for e in received.exports
             if e.headers.get("content-encoding") != "gzip"]
    assert not plain, f"exports not gzipped: {plain[:5]}"
    _assert_counted_once(received, TABLE_N)


def _delta_histograms(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    temporalities = {AggregationTemporality.Name(t) for _, _, t, _ in received.duration_points()}
    assert temporalities == {"AGGREGATION_TEMPORALITY_DELTA"}, f"{DURATION} temporality: {temporalities}"
    _assert_counted_once(received, TABLE_N)


def _spans_at_the_traces_endpoint(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    paths = {(e.signal, e.path[len(run.prefix):]) for e in received.exports}
    assert {p for s, p in paths if s == "traces"} == {"/specific/traces"}, f"the traces endpoint as given: {paths}"
    assert {p for s, p in paths if s == "metrics"} == {"/v1/metrics"}, paths
    assert len(received.server_spans()) == TABLE_N


def _metrics_over_grpc(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    assert grpc is not None
    assert "metrics" not in received.signals(), f"no metrics at the general (HTTP) endpoint: {received.signals()}"
    assert len(received.server_spans()) == TABLE_N, "spans stay on the general protocol and endpoint"
    at_grpc = grpc.received()
    assert at_grpc.signals() == {"metrics"}, f"only metrics over gRPC: {at_grpc.signals()}"
    _assert_counted_once(at_grpc, TABLE_N)


def _traces_over_grpc(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    assert grpc is not None
    assert "traces" not in received.signals(), f"no spans at the general (HTTP) endpoint: {received.signals()}"
    _assert_counted_once(received, TABLE_N)
    at_grpc = grpc.received()
    assert at_grpc.signals() == {"traces"}, f"only spans over gRPC: {at_grpc.signals()}"
    assert len(at_grpc.server_spans()) == TABLE_N


def _no_spans_metrics_exact(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    assert received.spans == [], f"always_off: no spans, got {[s.name for _, _, s in received.spans]}"
    _assert_counted_once(received, TABLE_N)
    assert len(received.gateway_logs()) == TABLE_N


def _resource_everywhere(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    assert received.signals() == {"metrics", "traces", "logs"}
    wrong = [(s, r.get("service.name"), r.get("deployment.environment")) for s, r in received.resources
             if r.get("service.name") != "table-gateway" or r.get("deployment.environment") != "test"]
    assert not wrong, f"resources without service.name=table-gateway, deployment.environment=test: {wrong[:5]}"


def _span_attributes_limited(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    spans = [s for _, _, s in received.spans]
    assert len(received.server_spans()) == TABLE_N
    over = [(s.name, len(s.attributes)) for s in spans if len(s.attributes) > 2]
    assert not over, f"spans with more than 2 attributes: {over}"
    assert all(s.dropped_attributes_count > 0 for s in received.server_spans()), "the server span's extra dropped"


def _each_while_serving(what: str, of: Callable[[Received], list], within: float) -> Callable[[Run, Receiver], None]:
    """Each request's ``what`` at the receiver ``within`` seconds, before the next request is sent: its processor
    exports every 100 ms. At the default delay (5 s for spans, 1 s for logs) a wait fails: after each export the
    processor sleeps the whole delay before the next, so the next request's item waits about that long."""

    def during(run: Run, receiver: Receiver) -> None:
        for n in range(TABLE_N):
            _requests(run, range(n, n + 1))
            wait_for(lambda n=n: len(of(receiver.of(run.prefix))) == n + 1, f"the {what} of request {n}, while serving",
                     within, interval=0.02)

    return during


def _logs_before_the_exit(run: Run, receiver: Receiver) -> None:
    """The table's requests, then their log records at the receiver before SIGTERM (a short OTEL_BLRP_SCHEDULE_DELAY):
    each variable is then observed on the three signals, whatever happens to logs at exit (the scenarios' part)."""
    _requests(run, range(TABLE_N))
    wait_for(lambda: len(receiver.of(run.prefix).gateway_logs()) == TABLE_N, "the gateway's records, while serving", 10)


def _exemplars(received: Received) -> list:
    return [(scope, metric.name, e) for _, scope, metric in received.metrics if metric.WhichOneof("data") == "histogram"
            for p in metric.histogram.data_points for e in p.exemplars]


def _no_exemplars(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    _assert_counted_once(received, TABLE_N)
    found = _exemplars(received)
    assert not found, f"always_off: no exemplars, got {[(s, n) for s, n, _ in found][:5]}"


def _exemplars_with_trace_ids(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    servers = _trace_ids(received.server_spans())
    ours = [e for scope, name, e in _exemplars(received) if name == DURATION and scope == "otel_llm_metrics"]
    assert ours, f"exemplars on our {DURATION}; exemplars seen: {[(s, n) for s, n, _ in _exemplars(received)][:5]}"
    assert all(e.trace_id in servers for e in ours), "each exemplar carries a request's trace id"


def _nothing_more(received: Received, run: Run, grpc: GrpcReceiver | None) -> None:
    pass


# id: (environment ({receiver}: this run's endpoint; {grpc}: a gRPC receiver's), what to serve, the check)
TABLE = {
    "OTEL_EXPORTER_OTLP_HEADERS": ({"OTEL_EXPORTER_OTLP_HEADERS": "x-table-token=secret-1"}, None,
                                   _every_export_has_header),
    "OTEL_EXPORTER_OTLP_COMPRESSION": ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, None, _every_export_gzipped),
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": (
        {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}, None, _delta_histograms),
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{receiver}/specific/traces"}, None,
                                           _spans_at_the_traces_endpoint),
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": ({"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
                                             "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "{grpc}"}, None,
                                            _metrics_over_grpc),
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                                            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{grpc}"}, None, _traces_over_grpc),
    "OTEL_TRACES_SAMPLER": ({"OTEL_TRACES_SAMPLER": "always_off"}, None, _no_spans_metrics_exact),
    "OTEL_RESOURCE_ATTRIBUTES+OTEL_SERVICE_NAME": ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
                                                    "OTEL_SERVICE_NAME": "table-gateway"}, None, _resource_everywhere),
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": ({"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "2"}, None, _span_attributes_limited),
    "OTEL_BSP_SCHEDULE_DELAY": ({"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "5000"},
                                _each_while_serving("server span", Received.server_spans, 2.0), _nothing_more),
    "OTEL_BLRP_SCHEDULE_DELAY": ({"OTEL_BLRP_SCHEDULE_DELAY": "100", "OTEL_BSP_SCHEDULE_DELAY": "5000"},
                                 _each_while_serving("log record", Received.gateway_logs, 0.6), _nothing_more),
    "OTEL_METRICS_EXEMPLAR_FILTER=always_off": ({"OTEL_METRICS_EXEMPLAR_FILTER": "always_off"}, None, _no_exemplars),
    "OTEL_METRICS_EXEMPLAR_FILTER=default": ({}, None, _exemplars_with_trace_ids),
}


@pytest.mark.parametrize("variable", TABLE)
def test_each_sdk_variable_is_seen_at_the_receiver(variable, receiver, upstream):
    env, during, check = TABLE[variable]
    grpc = GrpcReceiver() if any("{grpc}" in v for v in env.values()) else None
    try:
        if grpc is not None:
            env = {k: v.replace("{grpc}", grpc.url) for k, v in env.items()}
        run, received = _serve_and_stop(receiver, upstream, {"OTEL_BLRP_SCHEDULE_DELAY": "200", **env}, TABLE_N,
                                        during or _logs_before_the_exit)
        check(received, run, grpc)
    finally:
        if grpc is not None:
            grpc.stop()


# -- what the SDK's configuration finds through entry points: a vendor's package ------------------------------------

def test_a_vendors_exporters_and_id_generator_work_by_name_beside_our_endpoint(receiver, upstream, tmp_path):
    """Our configurator is the SDK's: exporters and an id generator that an installed package registers are used by
    name, as without us, while ``prometheus`` in the same list stays our one endpoint per server."""
    from tests.integration import vendor_exporters

    vendor_exporters.install_metadata(tmp_path / "site")
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    env = {"PYTHONPATH": str(tmp_path / "site"), "VENDOR_OUT": str(out), "OTEL_TRACES_EXPORTER": "vendor_file",
           "OTEL_METRICS_EXPORTER": "vendor_file,prometheus", "OTEL_PYTHON_ID_GENERATOR": "vendor_prefix",
           "OTEL_LOGS_EXPORTER": "none", "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
           "OTEL_LLM_METRICS_PROMETHEUS_PORT_ATTEMPTS": "1"}

    def requests_then_scrape(run: Run, _: Receiver) -> None:
        _requests(run, range(TABLE_N))

        def counted() -> float:
            page = local_http.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
                       if line.startswith("http_server_request_duration_seconds_count{")) == TABLE_N

        wait_for(counted, f"our endpoint on {port} counting {TABLE_N} requests", 20)

    _serve_and_stop(receiver, upstream, env, TABLE_N, requests_then_scrape)
    spans = [json.loads(line) for line in (out / "spans.jsonl").read_text().splitlines()]
    servers = [s for s in spans if s["kind"] == "SERVER"]
    assert len(servers) == TABLE_N, f"one server span per request through the vendor's exporter: {spans}"
    assert all(s["trace_id"].startswith(format(vendor_exporters.TRACE_ID_PREFIX, "x")) for s in spans), (
        f"trace ids from the vendor's id generator: {[s['trace_id'] for s in spans]}")
    exports = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert exports and exports[-1].get(DURATION) == TABLE_N, f"the vendor's last export counts each request: {exports}"
    assert len({s["instance"] for s in spans}) == 1


def test_each_worker_of_a_pre_fork_server_exports_as_itself_and_the_master_not_at_all(receiver, upstream):
    """gunicorn -w 2 under zero code, per-worker OTLP streams (OTEL_LLM_METRICS_OTLP_PER_WORKER; by default the
    server's metrics go out merged, tests/integration/test_otlp_merged.py): the master runs our configurator (the
    SDK's) and forks. Each worker exports under a service.instance.id of its own, the same on its metrics and its
    spans; the master exports nothing; every request counts once."""
    pids: set[int] = set()

    def over_fresh_connections(run: Run, _: Receiver) -> None:
        for n in range(N):
            response = local_http.get(f"{run.url}/relay/{n}", timeout=10)
            assert response.status_code == 200, response.text

    run, received = _serve_and_stop(receiver, upstream, {**AT_EXIT, "OTEL_LLM_METRICS_OTLP_PER_WORKER": "true"}, N,
                                    over_fresh_connections, workers=2)
    _assert_counted_once(received, N)
    ids_by_pid: dict[int, set] = {}
    for signal_name, resource in received.resources:
        ids_by_pid.setdefault(resource.get("process.pid"), set()).add((signal_name, resource.get(INSTANCE_ID)))
        pids.add(resource.get("process.pid"))
    assert run.popen.pid not in pids, f"the master ({run.popen.pid}) exported: {ids_by_pid}"
    for pid, seen in ids_by_pid.items():
        assert len({instance for _, instance in seen}) == 1, f"worker {pid}: one id on every signal: {seen}"
        assert {signal_name for signal_name, _ in seen} >= {"metrics"}, seen
    every_id = [instance for seen in ids_by_pid.values() for instance in {i for _, i in seen}]
    assert len(every_id) == len(set(every_id)), f"each worker its own id: {ids_by_pid}"
    assert len(received.server_spans()) == N
