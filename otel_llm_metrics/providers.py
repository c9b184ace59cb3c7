"""Build the OTel pieces from Settings: resource, metric readers, tracer provider.

Construction only; the lifecycle (lazy Prometheus endpoint, fork, shutdown) is in runtime.py.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

from opentelemetry.sdk.metrics.export import (
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from .config import Settings
from .registry import Registry
from .span_metrics import SpanMetricsProcessor

INSTANCE_ID = "service.instance.id"
SERVICE_NAME = "service.name"
_APP_SPEC = re.compile(r"([A-Za-z_][\w.]*):[A-Za-z_][\w.]*(\(.*\))?")  # uvicorn/gunicorn/hypercorn "module:app"


def default_service_name(argv: list[str] | None = None) -> str | None:
    """What this process serves, for when no service name is configured.

    ``uvicorn main:app`` (and gunicorn, hypercorn, granian alike) gives ``main``; ``python -m api``
    gives ``api``; ``python serve.py`` gives ``serve``. None when nothing says (``python -c``).
    """
    argv = sys.argv if argv is None else argv
    if "--multiprocessing-fork" in argv:  # a spawned worker (uvicorn --workers) before its argv is restored
        argv = _parent_argv() or argv
    for arg in argv[1:]:
        found = _APP_SPEC.fullmatch(arg)
        if found:
            return found.group(1)
    if not argv or not argv[0] or argv[0] == "-c":
        return None
    script = Path(argv[0])
    return script.parent.name if script.stem == "__main__" else script.stem


def _parent_argv() -> list[str] | None:
    """The command line of the process that spawned this one (the server's master)."""
    try:
        import psutil

        parent = psutil.Process().parent()
        command = parent.cmdline()[1:] if parent is not None else []  # without the interpreter
    except Exception:
        return None
    while command and command[0].startswith("-") and command[0] not in ("-m", "-c"):
        command = command[1:]  # interpreter options (-u, -X dev, ...)
    if len(command) > 1 and command[0] == "-m":  # as Python sets sys.argv[0] for python -m pkg.mod
        return [command[1].replace(".", "/") + "/__main__.py", *command[2:]]
    return command or None


def instance_id_configured() -> bool:
    """Whether OTEL_RESOURCE_ATTRIBUTES names service.instance.id (then it is the user's, kept across forks)."""
    return INSTANCE_ID in OTELResourceDetector().detect().attributes


def resource_attributes(settings: Settings) -> dict[str, str | int]:
    """What we add to the configured resource: the served app's name where none is configured (the SDK would
    say ``unknown_service:python3``), service.version, and this process's own service.instance.id and pid."""
    configured = OTELResourceDetector().detect().attributes  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME only
    attributes: dict[str, str | int] = {}
    fallback = default_service_name()
    if settings.service_name:
        attributes[SERVICE_NAME] = settings.service_name
    elif SERVICE_NAME not in configured and fallback:
        attributes[SERVICE_NAME] = fallback
    if settings.service_version:
        attributes["service.version"] = settings.service_version
    if INSTANCE_ID not in configured:
        attributes.update(process_identity())
    return attributes


def process_identity() -> dict[str, str | int]:
    """This process's service.instance.id and pid: each process (a forked worker too) is an instance of its own.
    The id is the SDK's own per-process one where it has one (1.4x: its providers renew it after a fork)."""
    try:
        from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector

        instance_id = ServiceInstanceIdResourceDetector().detect().attributes[INSTANCE_ID]
    except (ImportError, KeyError):
        instance_id = str(uuid.uuid4())
    return {INSTANCE_ID: instance_id, "process.pid": os.getpid()}


def renew_identity(providers: list[object], identity: Resource) -> None:
    """Give providers built before a fork this worker's identity, the SDK's own way (its tracers and loggers
    follow; an SDK before 1.4x has no way, and its spans keep the master's). After the fork, never in its hook."""
    for provider in providers:
        update = getattr(provider, "_update_resource", None)
        if update is not None:
            update(identity)


def make_resource(settings: Settings) -> Resource:
    """The SDK's resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, detectors) with ours added."""
    return Resource.create(resource_attributes(settings))


def _otlp_endpoint(settings: Settings, signal: str) -> dict:
    """Keyword arguments for an OTLP exporter; empty means "let the exporter read OTEL_* itself".

    A signal's own variable (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) takes precedence over the general
    one, as the specification says: then the exporter reads it itself, used as given.
    """
    if not settings.otlp_endpoint or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip():
        return {}
    base = settings.otlp_endpoint.rstrip("/")
    if otlp_protocol(settings, signal) == "grpc":
        return {"endpoint": base, "insecure": base.startswith("http://")}
    return {"endpoint": f"{base}/v1/{signal}"}


def otlp_protocol(settings: Settings, signal: str) -> str:
    """The signal's own ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`` where set (and one we export), else the general one."""
    own = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "").strip().lower()
    return own if own in ("grpc", "http/protobuf") else settings.otlp_protocol


def make_push_readers(settings: Settings) -> list[MetricReader]:
    """Readers that push (OTLP, console, an installed exporter); Prometheus is the runtime's."""
    readers: list[MetricReader] = []
    for name in settings.metrics_exporters:
        if name in ("prometheus", "none"):
            continue
        built = make_exporter(settings, "metrics", name)
        if isinstance(built, MetricReader):  # an installed pull reader of its own
            readers.append(built)
            continue
        readers.append(PeriodicExportingMetricReader(built, settings.export_interval_ms, settings.export_timeout_ms))
    return readers


def make_exporter(settings: Settings, signal: str, name: str) -> object:
    """The exporter ``name`` for ``signal``, found by the SDK's own entry-point code (``otlp`` as the protocol
    says, ``console``, or any installed package's); OTLP gets our endpoint and timeout, which ``setup()``'s
    keywords may have set."""
    from opentelemetry.sdk._configuration import _import_config_components

    arguments: dict = {}
    if name == "otlp":
        name = "otlp_proto_grpc" if otlp_protocol(settings, signal) == "grpc" else "otlp_proto_http"
        arguments = {"timeout": settings.export_timeout_ms / 1000, **_otlp_endpoint(settings, signal)}
    ((_, exporter_class),) = _import_config_components([name], f"opentelemetry_{signal}_exporter")
    return exporter_class(**arguments)


def make_tracer_provider(settings: Settings, resource: Resource) -> TracerProvider | None:
    if not settings.tracing:
        return None
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in settings.traces_exporter:
        provider.add_span_processor(BatchSpanProcessor(make_exporter(settings, "traces", name),
                                                       export_timeout_millis=settings.export_timeout_ms))
    return provider


def add_span_metrics(provider: TracerProvider, registry: Registry) -> None:
    """Spans become metrics as they end (gen_ai client spans, non-ASGI server spans)."""
    provider.add_span_processor(SpanMetricsProcessor(registry))
