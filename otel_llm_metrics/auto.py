"""Entry points that ``opentelemetry-instrument`` loads: zero code for any ASGI app under any ASGI server.

- ``Distro``: ours, so no other distro's defaults (OTLP to localhost:4317) apply.
- ``Configurator``: the SDK's own configuration builds the providers (so every variable it honours, any
  installed exporter, sampler or id generator, OTEL_CONFIG_FILE, work as they would without us), with our
  defaults (the embedded Prometheus endpoint, the resource's app name and per-process instance id); ours
  then join them. A bad setting stops start-up with the message from config.py: ``opentelemetry-instrument``
  swallows ordinary exceptions, so this exits instead of running uninstrumented unnoticed.
- ``attach_to_configured`` (pre-instrument): when another configurator was chosen, ours attach to its
  providers before any instrumentor loads and before their first export.
- ``AsgiServerInstrumentor``: measures each app once (``server_loaders``): FastAPI and Starlette apps where
  they build their middleware stack, under any server; other ASGI callables where uvicorn (``--workers``,
  gunicorn's UvicornWorker, ``fastapi run``), hypercorn or granian loads them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from .config import ConfigError, Settings, installed_names, load_settings
from .providers import resource_attributes
from .runtime import install

logger = logging.getLogger(__name__)
ENTRY_POINT_NAME = "otel_llm_metrics"  # of each entry point in pyproject.toml


class Distro(BaseDistro):
    def _configure(self, **kwargs: Any) -> None:
        """Nothing to default: the Configurator reads the settings."""


class Configurator(_OTelSDKConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        settings = _settings_or_exit()
        if settings.disabled:
            return
        if not os.environ.get("OTEL_CONFIG_FILE"):  # a declarative file says all itself
            kwargs["resource_attributes"] = {**resource_attributes(settings), **kwargs.get("resource_attributes", {})}
        try:
            with _metrics_exporter_variable(_sdk_metrics_exporters(settings)):
                super()._configure(**kwargs)  # the SDK's configuration: providers, exporters, sampler, logs
        except Exception as exc:  # opentelemetry-instrument would log it and run the app without telemetry
            _stop_start_up(sdk_configuration_error(exc))
        install(settings, adopt=True, instrument_clients=False)  # the instrumentors' entry points patch


def attach_to_configured() -> None:
    """``opentelemetry_pre_instrument``: right after whichever configurator ran (ours, opentelemetry-distro's,
    a vendor's) and before any instrumentor, so our numbers join its providers before their first export
    (which would otherwise carry another scope's copies of our names, unfiltered). Ours ran: nothing to do.
    Skipped when OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names ours (or is ``*``), as the instrumentors are."""
    disabled = {name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    if disabled & {ENTRY_POINT_NAME, "*"}:
        return
    settings = _settings_or_exit()
    if not settings.disabled:
        install(settings, instrument_clients=False)


def _settings_or_exit() -> Settings:
    """The OTEL_* settings; a bad one stops start-up, naming the setting and a fix."""
    try:
        return load_settings()
    except ConfigError as exc:
        _stop_start_up(str(exc))


def _stop_start_up(message: str) -> NoReturn:
    # SystemExit inside sitecustomize becomes a fatal-error dump; leave plainly instead.
    print(f"otel_llm_metrics: configuration error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2)


_VARIABLE_OF_GROUP = {"opentelemetry_traces_exporter": "OTEL_TRACES_EXPORTER",
                      "opentelemetry_metrics_exporter": "OTEL_METRICS_EXPORTER",
                      "opentelemetry_logs_exporter": "OTEL_LOGS_EXPORTER",
                      "opentelemetry_id_generator": "OTEL_PYTHON_ID_GENERATOR"}
_NOT_FOUND = re.compile(r"Requested component '(.*)' not found in entry point '(\w+)'")


def sdk_configuration_error(exc: Exception) -> str:
    """What the SDK's configuration raised, said our way where we can: the variable, what is installed, a fix."""
    found = _NOT_FOUND.search(str(exc))
    if found is None or found.group(2) not in _VARIABLE_OF_GROUP:
        return f"the OpenTelemetry SDK's configuration failed: {exc}"
    name, group = found.groups()
    variable = _VARIABLE_OF_GROUP[group]
    installed = installed_names(group)
    return (f"{variable}={name!r} is not valid: no installed package provides it (entry point group {group}: "
            f"{', '.join(installed) or 'none'}). Fix: {variable}={installed[0] if installed else 'none'}")


def _sdk_metrics_exporters(settings: Settings) -> str:
    """OTEL_METRICS_EXPORTER as the SDK's configuration should read it: our defaults (otlp once an endpoint is
    set), without ``prometheus``, which here is our one endpoint per server rather than the SDK's reader."""
    return ",".join(name for name in settings.metrics_exporters if name not in ("prometheus", "none")) or "none"


@contextmanager
def _metrics_exporter_variable(value: str) -> Iterator[None]:
    """OTEL_METRICS_EXPORTER=value while the SDK's configuration reads it; the user's value afterwards."""
    name = "OTEL_METRICS_EXPORTER"
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class AsgiServerInstrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        try:
            from .resources.pools import discover_sqlalchemy_engines_once_imported

            discover_sqlalchemy_engines_once_imported()
        except Exception:  # discovery is a convenience; the app must start regardless
            logger.debug("otel_llm_metrics: SQLAlchemy engine discovery is off", exc_info=True)
        from . import server_loaders

        server_loaders.install()

    def _uninstrument(self, **kwargs: Any) -> None:
        from . import server_loaders

        server_loaders.uninstall()
