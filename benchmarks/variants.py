"""The same small Starlette app, bare and under each instrumentation we compare against.

Cases: a small JSON response, and a 100-chunk SSE stream. Variants are built fresh so that no
instrumentation leaks into another. SDK-based variants get one in-memory reader each, so every
SDK-recording variant pays for the same single reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

CHUNKS = 100


async def small(request: Any) -> JSONResponse:
    return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion", "model": "demo"})


def _sse(chunks: int) -> StreamingResponse:
    async def events():
        for i in range(chunks):
            yield f'data: {{"choices":[{{"delta":{{"content":"tok"}}}}],"i":{i}}}\n\n'
    return StreamingResponse(events(), media_type="text/event-stream")


async def stream(request: Any) -> StreamingResponse:
    return _sse(CHUNKS)


async def stream1(request: Any) -> StreamingResponse:
    """A one-chunk stream: the fixed cost of a stream, so per-chunk cost can be told apart."""
    return _sse(1)


def bare() -> Starlette:
    return Starlette(routes=[Route("/small", small), Route("/stream", stream), Route("/stream1", stream1)])


def _sdk_meter_provider():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)


def ours(tracing: bool = False, app: Any = None, reader: Any = None) -> Any:
    """``app`` (the bare one by default) with ours; ``reader``: the in-memory reader to collect with, given by a
    caller that checks what was recorded."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_llm_metrics import Registry, Telemetry, load_settings

    exporters = ("prometheus",) if os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT") else ("none",)
    settings = load_settings(environ={}, metrics_exporters=exporters, traces_exporter="console" if tracing else "none",
                             prometheus_port=int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")))
    telemetry = Telemetry(settings, Registry(), [reader or InMemoryMetricReader()])
    if tracing:  # spans are made and ended; only the exporter is left out of the measurement
        telemetry.tracer_provider._active_span_processor._span_processors = ()  # type: ignore[union-attr]
    steady(telemetry)
    return telemetry.instrument(app or bare())


def steady(telemetry: Any) -> None:
    """Wait for the price table, which loads in a thread for about half a second after start-up: a benchmark
    measures what a process that has run that long pays, not the first calls' queueing for their price."""
    prices = getattr(telemetry.registry.gen_ai, "prices", None)
    if prices is not None:
        prices.wait_loaded()


def _sink() -> str:
    """The local OTLP/HTTP sink bench_asgi.py starts (benchmarks/otlp_sink.py)."""
    return os.environ["BENCH_OTLP_SINK"]


def ours_exported() -> Any:
    """Ours with every request's span sampled and exported over OTLP/HTTP to the local sink."""
    from otel_llm_metrics import Registry, Telemetry, load_settings

    settings = load_settings(environ={}, metrics_exporters=("none",), traces_exporter="otlp",
                             otlp_endpoint=_sink(), otlp_protocol="http/protobuf")
    telemetry = Telemetry(settings, Registry())
    app = telemetry.instrument(bare())
    app.flush = telemetry.tracer_provider.force_flush  # type: ignore[attr-defined]
    return app


def otel_asgi_exported() -> Any:
    """The peer: opentelemetry-instrumentation-asgi with the SDK tracer, exporting like ours."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_sink() + "/v1/traces")))
    app = OpenTelemetryMiddleware(bare(), meter_provider=NoOpMeterProvider(), tracer_provider=provider)
    app.flush = provider.force_flush  # type: ignore[attr-defined]
    return app


def otel_asgi(tracing: bool = False) -> Any:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NoOpTracerProvider

    return OpenTelemetryMiddleware(bare(), meter_provider=_sdk_meter_provider(),
                                   tracer_provider=TracerProvider() if tracing else NoOpTracerProvider())


def instrumentator() -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    app = bare()
    Instrumentator(registry=CollectorRegistry()).instrument(app)
    return app


def sdk_minimal() -> Any:
    """The smallest honest OTel-SDK middleware: one histogram record and two up-down adds."""
    from time import perf_counter

    meter = _sdk_meter_provider().get_meter("minimal")
    duration = meter.create_histogram("http.server.request.duration", unit="s")
    active = meter.create_up_down_counter("http.server.active_requests")
    app = bare()

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        attrs = {"http.request.method": scope["method"], "url.scheme": scope["scheme"]}
        active.add(1, attrs)
        start = perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            active.add(-1, attrs)
            duration.record(perf_counter() - start, attrs)
    return middleware


VARIANTS: dict[str, Callable[[], Any]] = {
    "bare": bare,
    "passthrough": lambda: passthrough(),
    "otel_llm_metrics": ours,
    "otel_llm_metrics+tracing": lambda: ours(tracing=True),
    "sdk-minimal": sdk_minimal,
    "instrumentator": instrumentator,
    "otel-asgi(metrics)": otel_asgi,
    "otel-asgi(metrics+tracer)": lambda: otel_asgi(tracing=True),
    "otel_llm_metrics+tracing+otlp": ours_exported,
    "otel-asgi(tracer+otlp)": otel_asgi_exported,
}


def app_from_env() -> Any:
    """For uvicorn: ``BENCH_VARIANT=name uvicorn benchmarks.variants:app_from_env --factory``."""
    return VARIANTS[os.environ.get("BENCH_VARIANT", "bare")]()


def passthrough() -> Any:
    """Reference floor: a pure-ASGI layer that wraps send and receive and does nothing else."""
    app = bare()

    async def middleware(scope, receive, send):
        async def wrapped_receive():
            return await receive()

        def wrapped_send(message):
            return send(message)
        await app(scope, wrapped_receive, wrapped_send)
    return middleware

