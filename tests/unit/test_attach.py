"""An OpenTelemetry set-up that exists before ours is extended, not replaced (issue 19): our numbers go into
the user's MeterProvider and readers, our server span comes from the user's TracerProvider (its sampler and
processors), and the process has one resource. Each case runs in its own interpreter: globals are set once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

APP_BUILT_SDK = """
import asyncio, json
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

resource = Resource.create({"service.name": "theirs", "service.instance.id": "their-instance"})
reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource))
tracer_provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(tracer_provider)

import otel_llm_metrics
from tests.asgi_client import call

async def hello(request):
    return PlainTextResponse("hi")
app = Starlette(routes=[Route("/hello", hello)])
telemetry = otel_llm_metrics.setup(app)
for _ in range(3):
    asyncio.run(call(app, "GET", "/hello"))

counts, resources, scopes_by_name = {}, set(), {}
for rm in reader.get_metrics_data().resource_metrics:
    resources.add(rm.resource.attributes.get("service.instance.id"))
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            scopes_by_name.setdefault(metric.name, set()).add(sm.scope.name)
            if metric.name == "http.server.request.duration":
                counts[sm.scope.name] = sum(p.count for p in metric.data.data_points)
server_spans = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
print(json.dumps({
    "same_meter_provider": telemetry.meter_provider is metrics.get_meter_provider(),
    "same_tracer_provider": telemetry.tracer_provider is tracer_provider,
    "counts": counts, "resources": sorted(map(str, resources)),
    "server_spans": len(server_spans),
    "span_resources": sorted({str(s.resource.attributes.get("service.instance.id")) for s in server_spans}),
    "twice": sorted(name for name, scopes in scopes_by_name.items() if len(scopes) > 1),
    "endpoint": telemetry._endpoint_reader is not None,
}))
"""


def _run(script: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_sdk_built_in_the_apps_code_before_setup_is_extended():
    found = _run(APP_BUILT_SDK)
    assert found["same_meter_provider"] and found["same_tracer_provider"], "one pipeline: theirs"
    assert found["counts"] == {"otel_llm_metrics": 3}, "every request once, in their reader"
    assert found["resources"] == ["their-instance"] == found["span_resources"], "one resource per process"
    assert found["server_spans"] == 3, "our server span, from their TracerProvider"
    assert found["twice"] == []
    assert found["endpoint"] is False, "no embedded endpoint beside a pipeline that was not asked for one"


def test_asking_for_prometheus_by_name_adds_the_endpoint_to_their_pipeline():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    found = _run(APP_BUILT_SDK, OTEL_METRICS_EXPORTER="prometheus", OTEL_EXPORTER_PROMETHEUS_PORT=str(port))
    assert found["endpoint"] is True and found["counts"] == {"otel_llm_metrics": 3}


ATTACH = """
import json, os
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
metrics.set_meter_provider(MeterProvider())
from otel_llm_metrics import auto, runtime
auto.attach_to_configured()
print(json.dumps(runtime._current is not None))
"""


def test_the_pre_instrument_hook_honours_disabled_instrumentations():
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS naming ours (or ``*``) keeps ours out of another configurator's
    pipeline, as it keeps the instrumentors out."""
    attached = {}
    for disabled in ("", "httpx,otel_llm_metrics", "*"):
        env = {**os.environ, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled, "OTEL_METRICS_EXPORTER": "none"}
        done = subprocess.run([sys.executable, "-c", ATTACH], capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env=env)
        assert done.returncode == 0, done.stderr
        attached[disabled] = json.loads(done.stdout.splitlines()[-1])
    assert attached == {"": True, "httpx,otel_llm_metrics": False, "*": False}
