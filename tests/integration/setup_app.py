"""The plain Starlette app instrumented with one call at start-up (no opentelemetry-instrument)."""

import otel_llm_metrics
from tests.integration.plain_apps import starlette_app

app = starlette_app
otel_llm_metrics.setup(app)
