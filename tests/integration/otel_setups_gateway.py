"""A FastAPI gateway for tests/integration/test_otel_setups.py: relays each request to a local upstream with
httpx and logs one line per request on the ``gateway`` logger.

- ``app``: unmodified, for ``opentelemetry-instrument uvicorn`` (zero code).
- ``sdk_app``: the SDK built in the app's own code (meter, tracer and logger providers exporting OTLP, the
  httpx instrumentation), then ``otel_llm_metrics.setup(app)``; for plain ``uvicorn``. Importing it builds them.

The upstream's URL comes from ``GATEWAY_UPSTREAM``.
"""

from __future__ import annotations

import logging
import os

import httpx
from fastapi import FastAPI

log = logging.getLogger("gateway")
ROUTE = "/relay/{n}"


def make_app() -> FastAPI:
    upstream = os.environ["GATEWAY_UPSTREAM"]
    gateway = FastAPI()

    @gateway.get(ROUTE)
    async def relay(n: int) -> dict:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"{upstream}/echo/{n}")
        log.warning("relayed request %d: upstream answered %d", n, answer.status_code)
        return {"n": n, "upstream": answer.status_code}

    return gateway


app = make_app()


def build_sdk_then_setup() -> FastAPI:
    """What an app with its own OpenTelemetry code does, then one call to ``otel_llm_metrics.setup``."""
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import otel_llm_metrics

    resource = Resource.create({"service.name": "gateway-own-sdk"})
    metrics.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
                                             resource=resource))
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(logger_provider)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
    HTTPXClientInstrumentor().instrument()

    gateway = make_app()
    otel_llm_metrics.setup(gateway)
    return gateway


def __getattr__(name: str) -> FastAPI:
    if name == "sdk_app":  # built only when a server asks for it, so that ``app``'s importers get no SDK
        globals()["sdk_app"] = built = build_sdk_then_setup()
        return built
    raise AttributeError(name)
