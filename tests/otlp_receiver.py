"""An OTLP/HTTP receiver for tests: decodes the protobuf of every export (metrics, traces, logs; gzip too),
on a free loopback port. One for every test that needs to see what an exporter really sent."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def value_of(any_value):  # an OTLP AnyValue, as Python
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(any_value.kvlist_value.values)
    return getattr(any_value, kind)


def attributes_of(key_values) -> dict:
    return {kv.key: value_of(kv.value) for kv in key_values}


@dataclass
class Export:
    """One export request as the receiver got it."""

    path: str
    headers: dict[str, str]
    signal: str  # metrics, traces, logs
    request: object  # the decoded Export*ServiceRequest


class Receiver:
    """OTLP/HTTP (protobuf) on a free loopback port; a run may post under its own path prefix."""

    def __init__(self) -> None:
        self.exports: list[Export] = []
        self.errors: list[tuple[str, str]] = []  # path, what could not be decoded
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    if headers.get("content-encoding") == "gzip":
                        body = gzip.decompress(body)
                    signal_name = next(s for s in ("metrics", "traces", "logs") if self.path.endswith(s))
                    kind = {"metrics": ExportMetricsServiceRequest, "traces": ExportTraceServiceRequest,
                            "logs": ExportLogsServiceRequest}[signal_name]
                    export = Export(self.path, headers, signal_name, kind.FromString(body))
                except Exception as exc:  # recorded, so that the run's test names it
                    with lock:
                        receiver.errors.append((self.path, repr(exc)))
                    self.send_response(400)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with lock:  # recorded before the answer: once the exporter has its answer, the test sees it
                    receiver.exports.append(export)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def exports_under(self, prefix: str = "") -> list[Export]:
        return [e for e in list(self.exports) if e.path.startswith(prefix + "/")]

    def metrics_requests(self) -> list:
        return [e.request for e in list(self.exports) if e.signal == "metrics"]

    def paths(self) -> list[str]:
        return [e.path for e in list(self.exports)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
