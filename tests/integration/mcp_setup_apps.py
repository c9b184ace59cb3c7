"""The MCP test servers instrumented with ``otel_llm_metrics.setup()`` (no opentelemetry-instrument)."""

import otel_llm_metrics
from tests.integration import mcp_apps

telemetry = otel_llm_metrics.setup()
fastmcp_app = telemetry.instrument(mcp_apps.fastmcp_app)
lowlevel_app = telemetry.instrument(mcp_apps.lowlevel_app)
