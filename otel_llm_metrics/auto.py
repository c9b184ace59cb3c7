"""Entry points that ``opentelemetry-instrument`` loads: zero code for any ASGI app under any ASGI server.

- ``Distro``: ours, so no other distro's defaults (OTLP to localhost:4317) apply.
- ``Configurator``: builds providers from OTEL_* settings (embedded Prometheus by default).
  A bad setting stops start-up with the message from config.py: ``opentelemetry-instrument``
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
import sys
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk._configuration import _BaseConfigurator

from .config import ConfigError, load_settings
from .runtime import install

logger = logging.getLogger(__name__)


class Distro(BaseDistro):
    def _configure(self, **kwargs: Any) -> None:
        """Nothing to default: the Configurator reads the settings."""


class Configurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        telemetry = _install_from_settings()
        if telemetry is not None:
            init_logs(telemetry.resource())


def attach_to_configured() -> None:
    """``opentelemetry_pre_instrument``: right after whichever configurator ran (ours, opentelemetry-distro's,
    a vendor's) and before any instrumentor, so our numbers join its providers before their first export
    (which would otherwise carry another scope's copies of our names, unfiltered). Ours ran: nothing to do."""
    _install_from_settings()


def _install_from_settings() -> Any:  # noqa: ANN401 - the Telemetry, or None when disabled
    """Install from OTEL_* settings, attached to providers that exist; a bad setting stops start-up."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        # SystemExit inside sitecustomize becomes a fatal-error dump; leave plainly instead.
        print(f"otel_llm_metrics: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)
    if settings.disabled:
        return None
    return install(settings, export_before_serving=False)  # a pre-fork master runs this too


def init_logs(resource: Any) -> None:  # noqa: ANN401 - an OTel Resource
    """Logs as the SDK's own configurator sets them up (``OTEL_LOGS_EXPORTER``, ``OTEL_BLRP_*``, the logging
    handler under ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED``), with the resource our metrics and
    spans carry; records made while a request is served carry its trace and span ids. Its own code, not a copy.
    """
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters, _init_logging
    from opentelemetry.sdk._logs import LoggerProvider

    names = _get_exporter_names("logs")
    if not names or isinstance(get_logger_provider(), LoggerProvider):
        return  # none asked for, or someone configured logs already: theirs stay
    try:
        _, _, exporters = _import_exporters([], [], names)
        handler = os.getenv("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "false").strip().lower() == "true"
        _init_logging(exporters, resource, handler)
    except Exception:  # logs are a convenience here: the app starts regardless, and says why
        logger.exception("otel_llm_metrics: could not set up logs from OTEL_LOGS_EXPORTER=%s",
                         os.getenv("OTEL_LOGS_EXPORTER"))


class AsgiServerInstrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        try:
            from .resources.pools import discover_sqlalchemy_engines

            discover_sqlalchemy_engines()
        except Exception:  # discovery is a convenience; the app must start regardless
            logger.debug("otel_llm_metrics: SQLAlchemy engine discovery is off", exc_info=True)
        from . import server_loaders

        server_loaders.install()

    def _uninstrument(self, **kwargs: Any) -> None:
        from . import server_loaders

        server_loaders.uninstall()
