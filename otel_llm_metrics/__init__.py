"""OpenTelemetry metrics and traces for LLM-serving ASGI apps, light on the hot path.

    telemetry = otel_llm_metrics.setup(app, service_name="my-llm-api")   # FastAPI/Starlette
    app = otel_llm_metrics.setup().instrument(app)                         # any ASGI callable

or, with no code: ``opentelemetry-instrument uvicorn app:app``.
"""

from . import catalogue
from .config import ConfigError, Settings, load_settings
from .http.middleware import MetricsMiddleware
from .limiter import ConcurrencyLimiter
from .llm.tenant import tenant
from .registry import Registry
from .resources.caches import cache_metrics, cached, instrument_redis
from .resources.gauges import observe_gauge
from .resources.pools import observe_pool
from .runtime import Telemetry, __version__, current_telemetry, setup
from .span_metrics import SpanMetricsProcessor

__all__ = ["ConcurrencyLimiter", "ConfigError", "MetricsMiddleware", "Registry", "Settings", "SpanMetricsProcessor",
           "Telemetry", "__version__", "cache_metrics", "cached", "catalogue", "current_telemetry", "instrument_redis",
           "load_settings", "observe_gauge", "observe_pool", "setup", "tenant"]
