"""Where the cost of a traced request goes, per span, with the OTel Python SDK (issue 11).

Each line adds one piece to the previous one; every span is sampled unless the line says otherwise.
Timings include the batch processor's export thread (flushed inside the timed region), since it
competes for the same GIL as the requests.

    .venv/bin/python benchmarks/bench_tracing.py [--spans 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import urllib.request
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry import context, trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: E402

from benchmarks.bench_asgi import _start_sink  # noqa: E402

START = {"http.request.method": "GET", "url.scheme": "http", "url.path": "/small", "network.protocol.version": "1.1",
         "server.address": "bench", "server.port": 8000, "client.address": "127.0.0.1", "user_agent.original": "bench"}
END = {"http.route": "/small", "http.response.status_code": 200}


class Nothing(SpanExporter):
    def export(self, spans):  # noqa: ANN001
        return SpanExportResult.SUCCESS


def request_span(tracer: trace.Tracer, attributes: bool = True) -> None:
    """What the middleware does with the SDK for one request."""
    span = tracer.start_span("GET", kind=trace.SpanKind.SERVER, attributes=START if attributes else None)
    token = context.attach(trace.set_span_in_context(span))
    if attributes:
        span.update_name("GET /small")
        span.set_attributes(END)
    context.detach(token)
    span.end()


def per_span(provider: TracerProvider, spans: int, attributes: bool = True, repeats: int = 5) -> float:
    tracer = provider.get_tracer("bench")
    for _ in range(500):
        request_span(tracer, attributes)
    provider.force_flush()
    times = []
    for _ in range(repeats):
        started = perf_counter()
        for _ in range(spans):
            request_span(tracer, attributes)
        provider.force_flush()
        times.append((perf_counter() - started) / spans)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=2000, help="per batch (the batch queue holds 2048)")
    args = parser.parse_args()
    sink = _start_sink()
    endpoint = os.environ["BENCH_OTLP_SINK"] + "/v1/traces"

    def provider(*processors, sampler=None) -> TracerProvider:
        made = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        for processor in processors:
            made.add_span_processor(processor)
        return made

    rows = [
        ("start + end, no attributes, no processor", per_span(provider(), args.spans, attributes=False)),
        ("+ the request's attributes, name and context (what our middleware asks)", per_span(provider(), args.spans)),
        ("+ BatchSpanProcessor, exporter that drops", per_span(provider(BatchSpanProcessor(Nothing())), args.spans)),
    ]
    memory = InMemorySpanExporter()
    per_span(provider(SimpleSpanProcessor(memory)), 512, repeats=1)
    finished = memory.get_finished_spans()[-512:]
    started = perf_counter()
    for _ in range(20):
        encode_spans(finished).SerializeToString()
    encode = (perf_counter() - started) / (20 * len(finished)) * 1e6
    rows.append(("OTLP protobuf encoding alone, per span (batches of 512)", encode))
    rows.append(("+ BatchSpanProcessor, OTLP/HTTP export to a local sink",
                 per_span(provider(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))), args.spans)))
    for ratio in (0.1, 0.01):
        rows.append((f"  same, sampler parentbased_traceidratio {ratio}",
                     per_span(provider(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)),
                                       sampler=ParentBased(TraceIdRatioBased(ratio))), args.spans)))
    print("| per request span | us |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value:.1f} |")
    received = urllib.request.urlopen(os.environ["BENCH_OTLP_SINK"] + "/count").read().decode()
    print(f"\nspans received by the sink: {received}")
    sink.kill()


if __name__ == "__main__":
    main()
