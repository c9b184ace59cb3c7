"""Cost of the span processor's ``on_end`` per span: ignored, gen_ai client, and server spans.

Spans are real SDK spans, made and ended once; ``on_end`` is then timed on them directly
(median of interleaved repeats), which is the processor's whole cost per span.

    .venv/bin/python benchmarks/bench_span_processor.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from otel_llm_metrics import Registry, SpanMetricsProcessor  # noqa: E402


def _spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT,
                                      attributes={"db.system": "postgresql", "db.statement": "SELECT 1"}):
        pass
    with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 48, "server.address": "api.openai.com"}):
        pass
    with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET", "http.route": "/orders/{id}", "http.response.status_code": 200,
            "url.scheme": "https"}):
        pass
    return dict(zip(("ignored (db client span)", "gen_ai client span", "server span (WSGI)"),
                    exporter.get_finished_spans(), strict=True))


def main() -> None:
    processor = SpanMetricsProcessor(Registry())
    spans = _spans()
    samples: dict[str, list[float]] = {name: [] for name in spans}
    n = 20_000
    for _ in range(7):
        for name, span in spans.items():
            started = perf_counter()
            for _ in range(n):
                processor.on_end(span)
            samples[name].append((perf_counter() - started) / n)
    print("SpanMetricsProcessor.on_end, median of 7 interleaved repeats of 20,000 calls\n")
    print("| span | us per span |")
    print("|---|---:|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values) * 1e6:.2f} |")


if __name__ == "__main__":
    main()
