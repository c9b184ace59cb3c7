"""Every panel's query and every template variable returns data from a real Prometheus fed by the demo.

The demo makes no calls upstream: the upstream dashboard's queries run in test_upstream_calls.py, against
a Prometheus scraping an app that calls a local provider through the openai SDK. The demo has no priced
calls and no tenants either, so the cost dashboard's queries must run against an app that has both.
The demo serves no MCP and calls none: the MCP dashboard's queries run here against the same Prometheus
scraping an MCP server (the mcp SDK's low-level server, zero code) and an agent calling it with the SDK's client.
"""

from __future__ import annotations

import re

import openai
import pytest

from tests import local_http
from tests.integration.servers import BIN, ROOT, AppServer, Process, free_port, wait_for
from tests.test_dashboards import dashboards

pytestmark = pytest.mark.integration
PROMPT = [{"role": "user", "content": "dashboards need data"}]
CALLS_MADE = "otel-llm-upstream.json"  # the dashboard of the LLM calls an app makes
COST = "otel-llm-cost.json"  # spend and tenants: priced calls made, with a tenant
MCP = "otel-llm-mcp.json"  # MCP tools served and called
# An agent (setup(), its own Prometheus endpoint) that runs tests.integration.mcp_client's calls, each in a session
# of its own (initialize ... DELETE: ok, isError, raising and unknown tools, a resource, a prompt), every second.
AGENT = """
import asyncio, sys, otel_llm_metrics
from tests.integration.mcp_client import calls
otel_llm_metrics.setup()
async def main():
    while True:
        await calls(sys.argv[1], "legacy")
        print("called", flush=True)
        await asyncio.sleep(1)
asyncio.run(main())
"""


def _substitute(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return re.sub(r"\$\w+", ".*", expr)


def _variable_query(query: str) -> str:
    """label_values(metric{...}, label) as a PromQL query with the same result set."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match, query
    return f"count by ({match.group(2)}) ({_substitute(match.group(1))})"


def _traffic(demo_app) -> None:
    client = openai.OpenAI(base_url=demo_app.url + "/v1", api_key="unused", max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="dash-model", messages=PROMPT, max_tokens=4)
        for _chunk in client.chat.completions.create(model="dash-model", messages=PROMPT, max_tokens=4, stream=True):
            pass
    with client.chat.completions.create(model="dash-model", messages=PROMPT, max_tokens=500, stream=True) as s:
        next(iter(s))
        next(iter(s))
    local_http.post(demo_app.url + "/v1/chat/completions", json={"messages": []})  # an error for the error panels


def queries_of(name: str, dashboard: dict) -> list[tuple[str, str]]:
    """(what, PromQL) for every template variable and panel target of a dashboard."""
    queries = [(f"{name} variable {variable['name']}", _variable_query(variable["query"]))
               for variable in dashboard["templating"]["list"]]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queries.append((f"{name}: {panel['title']} [{target['refId']}]", _substitute(target["expr"])))
    return queries


def assert_all_return_data(prometheus, queries: list[tuple[str, str]]) -> None:
    empty = []
    for what, promql in queries:
        try:
            wait_for(lambda q=promql: prometheus.query(q), what, deadline_s=60, interval=0.5)
        except pytest.fail.Exception:
            empty.append(f"{what}: {promql}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_panel_and_variable_returns_data(demo_app, prometheus):
    _traffic(demo_app)
    queries = [query for name, dashboard in dashboards().items() if name not in (CALLS_MADE, COST, MCP)
               for query in queries_of(name, dashboard)]
    assert_all_return_data(prometheus, queries)


def test_every_mcp_panel_and_variable_returns_data(prometheus):
    """Both sides measured for real: the server under zero code, the agent with setup(), scraped while they run."""
    server = AppServer("tests.integration.mcp_apps:lowlevel_app").wait_ready()
    agent_port = free_port()
    agent = Process([str(BIN / "python"), "-c", AGENT, server.url + "/tools/rpc/"],
                    env={"PYTHONPATH": str(ROOT), "OTEL_EXPORTER_PROMETHEUS_PORT": str(agent_port)})
    try:
        wait_for(lambda: "called" in agent.log() or agent.popen.poll() is not None, "the agent's first calls")
        assert agent.popen.poll() is None, agent.log()
        prometheus.add_target(f"127.0.0.1:{server.metrics_port}")
        prometheus.add_target(f"127.0.0.1:{agent_port}")
        served, made = (f'mcp_{side}_operation_duration_seconds_count{{instance="127.0.0.1:{port}"}}'
                        for side, port in (("server", server.metrics_port), ("client", agent_port)))
        for count in (served, made):  # scraped twice while calls go on: the rates are not zero
            wait_for(lambda c=count: (prometheus.value(f"sum(increase({c}[30s]))") or 0) > 0, f"MCP calls in {count}")
        assert_all_return_data(prometheus, queries_of(MCP, dashboards()[MCP]))
        # The low-level server answers refuse with isError, explode with a JSON-RPC error (code 0) and nosuch with
        # -32602, the caller's mistake: not a failure where served, one where called.
        failing = {"served": {"add": 0, "refuse": 1, "explode": 1, "nosuch": 0},
                   "called": {"add": 0, "refuse": 1, "explode": 1, "nosuch": 1}}
        rules = {"served": ("job_tool:mcp_server_tool_failure_ratio:rate5m",
                            "job_tool:mcp_server_tool_error_ratio:rate5m"),
                 "called": ("job_server_tool:mcp_client_tool_failure_ratio:rate5m",
                            "job_server_tool:mcp_client_tool_error_ratio:rate5m")}
        for side, (failure, tool_error) in rules.items():
            for tool, share in failing[side].items():
                prometheus.wait_value(f'sum({failure}{{gen_ai_tool_name="{tool}"}})', share)
                prometheus.wait_value(f'sum({tool_error}{{gen_ai_tool_name="{tool}"}})', int(tool == "refuse"))
    finally:
        agent.stop()
        server.stop()

