"""Build grafana/dashboards/*.json from one description: `python scripts/build_dashboards.py`.

Dashboards are data; this keeps their ids, datasource references, variables and layout regular.
tests/integration/test_grafana.py checks the committed JSON equals what this builds, and runs every
panel's query against a real Prometheus fed by the demo app.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
J = 'job=~"$job"'
JI = 'job=~"$job",instance=~"$instance"'
JPM = 'job=~"$job",gen_ai_provider_name=~"$provider",gen_ai_request_model=~"$upstream_model"'
PM = "{{gen_ai_provider_name}} {{gen_ai_request_model}}"


def variable(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": PROMETHEUS, "query": query,
            "definition": query, "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": "All", "value": "$__all"}}


VARIABLES = {
    "job": variable("job", "service", "label_values(http_server_request_duration_seconds_count, job)"),
    "instance": variable("instance", "instance", 'label_values(process_uptime_seconds{job=~"$job"}, instance)'),
    "route": variable("route", "route", 'label_values(http_server_request_duration_seconds_count{job=~"$job"}, http_route)'),
    "model": variable("model", "model",
                      'label_values(gen_ai_server_request_duration_seconds_count{job=~"$job"}, gen_ai_request_model)'),
    # The LLMs the app calls (gen_ai.client.*): every attempt is counted, failed ones too.
    "provider": variable("provider", "provider", 'label_values(gen_ai_client_attempts_total{job=~"$job"}, gen_ai_provider_name)'),
    "upstream_model": variable("upstream_model", "model",
                               'label_values(gen_ai_client_attempts_total{job=~"$job",gen_ai_provider_name=~"$provider"}, gen_ai_request_model)'),
    # For whom (tenant.id): only when tenants are configured; "All" also matches series without the label.
    "tenant": variable("tenant", "tenant", 'label_values(gen_ai_client_cost_USD_total{job=~"$job"}, tenant_id)'),
    # MCP tools, served or called: "All" also matches the operations that are not tool calls.
    "tool": variable("tool", "tool", 'label_values({__name__=~"mcp_(server|client)_operation_duration_seconds_count",'
                                     'job=~"$job"}, gen_ai_tool_name)'),
}


def panel(title: str, unit: str, *targets: tuple[str, str], kind: str = "timeseries", exemplar: bool = False,
          defaults: dict | None = None, extra: dict | None = None) -> dict:
    """`defaults` adds to fieldConfig.defaults (thresholds, custom draw style); `extra` to the panel (interval, timeFrom)."""
    return {"type": kind, "title": title, "datasource": PROMETHEUS,
            "fieldConfig": {"defaults": {"unit": unit, **(defaults or {})}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + i), "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend,
                         "exemplar": exemplar} for i, (expr, legend) in enumerate(targets)],
            **(extra or {})}


JT = 'job=~"$job",tenant_id=~"$tenant"'
JPMT = f'{JPM},tenant_id=~"$tenant"'
BUDGET_STEPS = {"thresholds": {"mode": "absolute", "steps": [
    {"color": "green", "value": None}, {"color": "orange", "value": 0.8}, {"color": "red", "value": 1}]}}
DAILY_BARS = {"custom": {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal", "group": "A"}}}


def cost_panels() -> list[dict]:
    """What the LLM calls cost (gen_ai.client.cost: the app's spend) and what the app serves (gen_ai.server.cost).

    Never add the two: in a gateway one proxied call is in both. Unpriced calls and tokens are counted apart.
    """
    return [
        panel("Spend per model, calls made (USD/h, 1h window)", "currencyUSD",
              (f"sum by (gen_ai_provider_name, gen_ai_request_model) "
               f"(job_provider_model:gen_ai_client_cost_usd_per_hour:rate1h{{{JPM}}})", PM)),
        panel("Spend per tenant, calls made (USD/h, 1h window)", "currencyUSD",
              (f"sum by (tenant_id) (job_tenant:gen_ai_client_cost_usd_per_hour:rate1h{{{JT}}})", "{{tenant_id}}")),
        panel("Spend per day, calls made (USD, last 7 days)", "currencyUSD",
              (f"sum by (gen_ai_provider_name, gen_ai_request_model) (increase(gen_ai_client_cost_USD_total{{{JPMT}}}[1d]))",
               PM), defaults=DAILY_BARS, extra={"interval": "1d", "timeFrom": "7d"}),
        panel("Spend rate / budget (30m window; alert LLMSpendAboveBudget above 100%)", "percentunit",
              (f"job:gen_ai_client_cost_usd_per_hour:rate30m{{{J}}} / on () group_left () llm:spend_budget_usd_per_hour",
               "{{job}}"), kind="stat", defaults=BUDGET_STEPS),
        panel("Unpriced share per model, calls made (calls, tokens)", "percentunit",
              (f"job_provider_model:gen_ai_client_unpriced_calls_ratio:rate5m{{{JPM}}}", f"calls {PM}"),
              (f"job_provider_model:gen_ai_client_unpriced_tokens_ratio:rate5m{{{JPM}}}", f"tokens {PM}")),
        panel("Served value per tenant, responses served (USD/h, 1h window)", "currencyUSD",
              (f"sum by (tenant_id) (job_tenant:gen_ai_server_cost_usd_per_hour:rate1h{{{JT}}})", "{{tenant_id}}")),
    ]


def mcp_panels() -> list[dict]:
    """MCP (docs/dashboards-mcp.md): the tools this app serves, then the ones it calls as an agent (per server).

    "Errors" are operations with an error.type other than tool_error; a tool call "fails" with either.
    """
    tool = f'{J},gen_ai_tool_name=~"$tool"'
    served = [
        panel("Served: MCP operations per second by method", "reqps",
              (f"sum by (mcp_method_name) (job_method_tool:mcp_server_operations:rate5m{{{J}}})", "{{mcp_method_name}}")),
        panel("Served: tool calls per second by tool", "reqps",
              (f'sum by (gen_ai_tool_name) (job_method_tool:mcp_server_operations:rate5m{{{tool},'
               f'mcp_method_name="tools/call"}})', "{{gen_ai_tool_name}}")),
        panel("Served: tool call latency per tool (p50, p95; alert above 10s)", "s",
              *[(f"job_tool:mcp_server_tool_call_duration_seconds:{q}{{{tool}}}", f"{q} {{{{gen_ai_tool_name}}}}")
                for q in ("p50", "p95")]),
        panel("Served: tool calls failing by tool (any error; tool_error: isError results; alert above 10%)",
              "percentunit", (f"job_tool:mcp_server_tool_failure_ratio:rate5m{{{tool}}}", "failing {{gen_ai_tool_name}}"),
              (f"job_tool:mcp_server_tool_error_ratio:rate5m{{{tool}}}", "tool_error {{gen_ai_tool_name}}")),
        panel("Served: error ratio by method (JSON-RPC and transport errors, not the caller's mistakes)", "percentunit",
              (f"job_method:mcp_server_error_ratio:rate5m{{{J}}}", "{{mcp_method_name}}")),
        panel("Served: failed operations per second by method and error.type", "reqps",
              (f'sum by (mcp_method_name, error_type) (rate(mcp_server_operation_duration_seconds_count{{{J},'
               f'error_type!=""}}[$__rate_interval]))', "{{mcp_method_name}} {{error_type}}")),
        panel("Served: open MCP sessions", "short",
              (f"sum by (job) (mcp_server_session_active{{{J}}})", "{{job}}")),
        panel("Served: session duration (p50, p95, 1h window)", "s",
              *[(f"job:mcp_server_session_duration_seconds:{q}_1h{{{J}}}", f"{q} {{{{job}}}}") for q in ("p50", "p95")]),
    ]
    made = [
        panel("Called: MCP operations per second by server and method", "reqps",
              (f"sum by (server_address, mcp_method_name) (job_server_method_tool:mcp_client_operations:rate5m{{{J}}})",
               "{{server_address}} {{mcp_method_name}}")),
        panel("Called: tool calls per second by server and tool", "reqps",
              (f'sum by (server_address, gen_ai_tool_name) (job_server_method_tool:mcp_client_operations:rate5m{{{tool},'
               f'mcp_method_name="tools/call"}})', "{{server_address}} {{gen_ai_tool_name}}")),
        panel("Called: tool call latency per server and tool (p50, p95; alert above 10s)", "s",
              *[(f"job_server_tool:mcp_client_tool_call_duration_seconds:{q}{{{tool}}}",
                 f"{q} {{{{server_address}}}} {{{{gen_ai_tool_name}}}}") for q in ("p50", "p95")]),
        panel("Called: tool calls failing per server and tool (any error; tool_error; alert above 10%)", "percentunit",
              (f"job_server_tool:mcp_client_tool_failure_ratio:rate5m{{{tool}}}",
               "failing {{server_address}} {{gen_ai_tool_name}}"),
              (f"job_server_tool:mcp_client_tool_error_ratio:rate5m{{{tool}}}",
               "tool_error {{server_address}} {{gen_ai_tool_name}}")),
        panel("Called: error ratio per server and method (every JSON-RPC error, HTTP status)", "percentunit",
              (f"job_server_method:mcp_client_error_ratio:rate5m{{{J}}}", "{{server_address}} {{mcp_method_name}}")),
        panel("Called: failed operations per second by server, method and error.type", "reqps",
              (f'sum by (server_address, mcp_method_name, error_type) (rate(mcp_client_operation_duration_seconds_count'
               f'{{{J},error_type!=""}}[$__rate_interval]))', "{{server_address}} {{mcp_method_name}} {{error_type}}")),
        panel("Called: open MCP sessions per server", "short",
              (f"sum by (server_address) (mcp_client_session_active{{{J}}})", "{{server_address}}")),
        panel("Called: session duration per server (p50, p95, 1h window)", "s",
              *[(f"job_server:mcp_client_session_duration_seconds:{q}_1h{{{J}}}", f"{q} {{{{server_address}}}}")
                for q in ("p50", "p95")]),
    ]
    return [*served, *made]


DASHBOARDS = {
    "otel-llm-overview": ("LLM app: overview (RED, in flight, queue)", ["job", "instance", "route"], [
        panel("Requests per second by route", "reqps",
              (f'sum by (http_route) (job_route:http_server_requests:rate5m{{{J},http_route=~"$route"}})', "{{http_route}}")),
        panel("Error ratio", "percentunit", (f"job:http_server_error_ratio:rate5m{{{J}}}", "{{job}}")),
        panel("Latency by route (p50, p95, p99)", "s",
              *[(f'job_route:http_server_request_duration_seconds:{q}{{{J},http_route=~"$route"}}',
                 f"{q} {{{{http_route}}}}") for q in ("p50", "p95", "p99")]),
        panel("Request duration (exemplars link to traces)", "s",
              (f'histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{J}}}[$__rate_interval])))',
               "p95"), exemplar=True),
        panel("In flight now", "short", (f"sum by (instance) (http_server_active_requests{{{JI}}})", "{{instance}}")),
        panel("Peak in flight per route (since start)", "short",
              (f"max by (http_route) (http_server_route_active_requests_peak{{{J}}})", "{{http_route}}")),
        panel("Queued at the limiter", "short",
              (f"sum by (concurrency_limiter_name) (concurrency_limiter_waiting_requests{{{J}}})", "{{concurrency_limiter_name}}")),
        panel("Limiter wait (p95)", "s",
              (f"histogram_quantile(0.95, sum by (le, concurrency_limiter_name) "
               f"(rate(concurrency_limiter_wait_time_seconds_bucket{{{J}}}[$__rate_interval])))", "{{concurrency_limiter_name}}")),
    ]),
    "otel-llm-genai": ("LLM app: models, tokens and streams", ["job", "model"], [
        panel("Time to first token by model (p50, p95)", "s",
              *[(f'job_model:gen_ai_server_time_to_first_token_seconds:{q}{{{J},gen_ai_request_model=~"$model"}}',
                 f"{q} {{{{gen_ai_request_model}}}}") for q in ("p50", "p95")]),
        panel("Time per output token (p50)", "s",
              (f'job_model:gen_ai_server_time_per_output_token_seconds:p50{{{J},gen_ai_request_model=~"$model"}}',
               "{{gen_ai_request_model}}")),
        panel("Tokens per second by model", "short",
              (f'job_model_type:gen_ai_server_tokens:rate5m{{{J},gen_ai_request_model=~"$model"}}',
               "{{gen_ai_request_model}} {{gen_ai_token_type}}")),
        panel("LLM requests per second by model", "reqps",
              (f'job_model:gen_ai_server_requests:rate5m{{{J},gen_ai_request_model=~"$model"}}', "{{gen_ai_request_model}}")),
        panel("Stream outcomes", "short",
              (f"sum by (http_stream_outcome) (rate(http_server_streams_total{{{J}}}[$__rate_interval]))",
               "{{http_stream_outcome}}")),
        panel("Stream cancellation ratio", "percentunit", (f"job:http_server_stream_cancel_ratio:rate5m{{{J}}}", "{{job}}")),
        panel("Output tokens estimated (no usage reported)", "percentunit",
              (f'sum(rate(gen_ai_server_token_usage_sum{{{J},gen_ai_usage_estimated="true"}}[5m])) / '
               f'sum(rate(gen_ai_server_token_usage_sum{{{J},gen_ai_token_type="output"}}[5m]))', "estimated share")),
        panel("Time to first byte of streams (p95)", "s",
              (f"histogram_quantile(0.95, sum by (le) (rate(http_server_stream_time_to_first_byte_seconds_bucket{{{J}}}"
               "[$__rate_interval])))", "p95"), exemplar=True),
    ]),
    "otel-llm-upstream": ("LLM app: upstream LLM calls (providers, models, rate limits)", ["job", "provider", "upstream_model", "route"], [
        panel("Upstream calls per second (operations, attempts)", "reqps",
              (f"job_provider_model:gen_ai_client_operations:rate5m{{{JPM}}}", PM),
              (f"job_provider_model:gen_ai_client_attempts:rate5m{{{JPM}}}", f"attempts {PM}")),
        panel("Upstream errors per second by error.type (attempts)", "reqps",
              (f"job_provider_model_error:gen_ai_client_attempt_errors:rate5m{{{JPM}}}", f"{{{{error_type}}}} {PM}")),
        panel("Share of attempts answered 429 (alert: above 5%)", "percentunit",
              (f"job_provider_model:gen_ai_client_rate_limited_ratio:rate5m{{{JPM}}}", PM)),
        panel("Upstream latency per operation, retries included (p50, p95)", "s",
              *[(f"job_provider_model:gen_ai_client_operation_duration_seconds:{q}{{{JPM}}}", f"{q} {PM}")
                for q in ("p50", "p95")]),
        panel("Upstream time to first chunk (p50, p95)", "s",
              *[(f"job_provider_model:gen_ai_client_operation_time_to_first_chunk_seconds:{q}{{{JPM}}}", f"{q} {PM}")
                for q in ("p50", "p95")]),
        panel("Upstream tokens per second (input, output)", "short",
              (f"job_provider_model_type:gen_ai_client_tokens:rate5m{{{JPM}}}", f"{PM} {{{{gen_ai_token_type}}}}")),
        panel("Rate limit remaining (provider's last answer)", "short",
              (f"job_provider_model_resource:gen_ai_client_rate_limit_remaining:min{{{JPM}}}",
               f"{PM} {{{{gen_ai_rate_limit_resource}}}}")),
        panel("Rate limit headroom, remaining / limit (alert: below 10%)", "percentunit",
              (f"job_provider_model_resource:gen_ai_client_rate_limit_headroom:ratio{{{JPM}}}",
               f"{PM} {{{{gen_ai_rate_limit_resource}}}}")),
        panel("App's own time around upstream calls by route (p50, p95)", "s",
              *[(f'job_route:http_server_request_upstream_overhead_seconds:{q}{{{J},http_route=~"$route"}}',
                 f"{q} {{{{http_route}}}}") for q in ("p50", "p95")]),
        panel("Relayed streams: time the app adds before the first token (p95)", "s",
              (f'job_route:http_server_request_first_token_overhead_seconds:p95{{{J},http_route=~"$route"}}', "{{http_route}}")),
    ]),
    "otel-llm-runtime": ("LLM app: runtime (CPU, memory, GC, event loop)", ["job", "instance"], [
        panel("CPU cores used", "short", (f"job_instance:process_cpu_cores:rate5m{{{JI}}}", "{{instance}}")),
        panel("Resident memory", "bytes", (f"process_memory_usage_bytes{{{JI}}}", "{{instance}}")),
        panel("Threads", "short", (f"process_thread_count{{{JI}}}", "{{instance}}")),
        panel("Open file descriptors", "short", (f"process_unix_file_descriptor_count{{{JI}}}", "{{instance}}")),
        panel("GC collections per second", "short",
              (f"sum by (cpython_gc_generation) (rate(cpython_gc_collections_total{{{JI}}}[$__rate_interval]))",
               "gen {{cpython_gc_generation}}")),
        panel("Event-loop lag (p99)", "s", (f"job_instance:asyncio_event_loop_lag_seconds:p99{{{JI}}}", "{{instance}}")),
        panel("System CPU by mode", "percentunit", (f"avg by (cpu_mode) (system_cpu_utilization{{{JI}}})", "{{cpu_mode}}")),
        panel("System memory used", "percentunit",
              (f'avg by (instance) (system_memory_utilization{{{JI},system_memory_state="used"}})', "{{instance}}")),
    ]),
    "otel-llm-pools": ("LLM app: database pools and caches", ["job"], [
        panel("Connections by pool and state", "short",
              (f"sum by (db_client_connection_pool_name, db_client_connection_state) (db_client_connection_count{{{J}}})",
               "{{db_client_connection_pool_name}} {{db_client_connection_state}}")),
        panel("Pool utilisation (used / max)", "percentunit",
              (f"job_pool:db_client_connection_utilization:ratio{{{J}}}", "{{db_client_connection_pool_name}}")),
        panel("Waiting for a connection", "short",
              (f"sum by (db_client_connection_pool_name) (db_client_connection_pending_requests{{{J}}})",
               "{{db_client_connection_pool_name}}")),
        panel("Connection timeouts (5m)", "short",
              (f"sum by (db_client_connection_pool_name) (increase(db_client_connection_timeouts_total{{{J}}}[5m]))",
               "{{db_client_connection_pool_name}}")),
        panel("Connection wait and use time (p95)", "s",
              (f"histogram_quantile(0.95, sum by (le, db_client_connection_pool_name) "
               f"(rate(db_client_connection_wait_time_seconds_bucket{{{J}}}[$__rate_interval])))", "wait {{db_client_connection_pool_name}}"),
              (f"histogram_quantile(0.95, sum by (le, db_client_connection_pool_name) "
               f"(rate(db_client_connection_use_time_seconds_bucket{{{J}}}[$__rate_interval])))", "use {{db_client_connection_pool_name}}")),
        panel("Cache hit ratio", "percentunit", (f"job_cache:cache_hit_ratio:rate5m{{{J}}}", "{{cache_name}}")),
        panel("Cache lookups per second", "short",
              (f"sum by (cache_name) (rate(cache_hits_total{{{J}}}[$__rate_interval]))", "hits {{cache_name}}"),
              (f"sum by (cache_name) (rate(cache_misses_total{{{J}}}[$__rate_interval]))", "misses {{cache_name}}")),
    ]),
    "otel-llm-cost": ("LLM cost and tenants", ["job", "provider", "upstream_model", "tenant"], cost_panels()),
    "otel-llm-mcp": ("MCP: tools served and called (operations, latency, errors, sessions)", ["job", "tool"], mcp_panels()),
}


def build(uid: str, title: str, variables: list[str], panels: list[dict]) -> dict:
    laid_out = []
    for index, item in enumerate(panels):
        laid_out.append({"id": index + 1, "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                         **item})
    return {"uid": uid, "title": title, "tags": ["otel-llm-metrics"], "timezone": "browser", "schemaVersion": 39,
            "version": 1, "editable": True, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": [VARIABLES[v] for v in variables]}, "annotations": {"list": []},
            "panels": laid_out}


def dashboards() -> dict[str, dict]:
    return {uid: build(uid, title, variables, panels) for uid, (title, variables, panels) in DASHBOARDS.items()}


def render(dashboard: dict) -> str:
    return json.dumps(dashboard, indent=2) + "\n"


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for uid, dashboard in dashboards().items():
        (OUT / f"{uid}.json").write_text(render(dashboard))
