"""Every panel's query and every template variable returns data from a real Prometheus fed by the demo.

The demo makes no calls upstream: the upstream dashboard's queries run in test_upstream_calls.py, against
a Prometheus scraping an app that calls a local provider through the openai SDK. The demo has no priced
calls and no tenants either, so the cost dashboard's queries must run against an app that has both.
"""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests.integration.servers import wait_for
from tests.test_dashboards import dashboards

pytestmark = pytest.mark.integration
PROMPT = [{"role": "user", "content": "dashboards need data"}]
CALLS_MADE = "otel-llm-upstream.json"  # the dashboard of the LLM calls an app makes
COST = "otel-llm-cost.json"  # spend and tenants: priced calls made, with a tenant


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
    httpx.post(demo_app.url + "/v1/chat/completions", json={"messages": []})  # an error for the error panels


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
    queries = [query for name, dashboard in dashboards().items() if name not in (CALLS_MADE, COST)
               for query in queries_of(name, dashboard)]
    assert_all_return_data(prometheus, queries)

