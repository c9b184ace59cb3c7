"""MCP servers and clients with the real SDKs, on 127.0.0.1: a FastMCP server (SSE answers) and the ``mcp`` SDK's
low-level server (JSON answers) under uvicorn, zero code and with setup(), called by the SDK's streamable-HTTP
client (httpx2) in its own process, measured with setup(). Exact counts per method, tool and outcome on both
sides; the SDK's results and exceptions are the same with and without the package."""

from __future__ import annotations

import json
import subprocess

import pytest

from otel_llm_metrics import catalogue
from otel_llm_metrics.cli import parse
from tests import local_http
from tests.integration.servers import BIN, ROOT, AppServer, free_port, wait_for

pytestmark = pytest.mark.integration

SERVED, MADE = "mcp_server_operation_duration_seconds", "mcp_client_operation_duration_seconds"
# (method, tool or prompt, error.type, rpc.response.status_code) -> operations per client run
COMMON = {("initialize", "", "", ""): 1, ("notifications/initialized", "", "", ""): 1, ("tools/list", "", "", ""): 1,
          ("tools/call", "add", "", ""): 1, ("tools/call", "refuse", "tool_error", ""): 1,
          ("resources/read", "", "", ""): 1, ("prompts/get", "summarise", "", ""): 1}
# FastMCP answers a raising tool and an unknown one with a tool result marked isError; the low-level server answers
# a raising tool with code 0 and our unknown tool with -32602, the caller's mistake: no error on the served side.
FASTMCP = {**COMMON, ("tools/call", "explode", "tool_error", ""): 1, ("tools/call", "nosuch", "tool_error", ""): 1}
LOWLEVEL_SERVED = {**COMMON, ("tools/call", "explode", "0", "0"): 1, ("tools/call", "nosuch", "", "-32602"): 1}
LOWLEVEL_MADE = {**COMMON, ("tools/call", "explode", "0", "0"): 1, ("tools/call", "nosuch", "-32602", "-32602"): 1}
SERVERS = {"fastmcp": ("fastmcp_app", "/mcp/", FASTMCP, FASTMCP),
           "lowlevel": ("lowlevel_app", "/tools/rpc/", LOWLEVEL_SERVED, LOWLEVEL_MADE)}


def run_client(url: str, measured: bool) -> dict:
    done = subprocess.run([str(BIN / "python"), "-m", "tests.integration.mcp_client", url, "legacy",
                           *(["measured"] if measured else [])], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": str(BIN), "PYTHONPATH": str(ROOT),
                               "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port())})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def operations(exposition: str, family: str) -> dict[tuple, int]:
    _, histograms = parse(exposition)
    counts: dict[tuple, int] = {}
    for labels, data in histograms.get(family, {}).items():
        got = dict(labels)
        key = (got.get("mcp_method_name", ""), got.get("gen_ai_tool_name") or got.get("gen_ai_prompt_name") or "",
               got.get("error_type", ""), got.get("rpc_response_status_code", ""))
        counts[key] = counts.get(key, 0) + int(data.count)
    return counts


def sessions(exposition: str, family: str) -> int:
    _, histograms = parse(exposition)
    return sum(int(data.count) for data in histograms.get(family, {}).values())


def gauge(exposition: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines() if line.startswith(name + "{"))


@pytest.mark.parametrize("zero_code", [True, False], ids=["zero-code", "setup"])
@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_tool_calls_are_measured_on_both_sides_exactly_and_the_sdk_sees_no_difference(kind, zero_code):
    app, path, served, made = SERVERS[kind]
    module = "tests.integration.mcp_apps" if zero_code else "tests.integration.mcp_setup_apps"
    server = AppServer(f"{module}:{app}", zero_code=zero_code)
    try:
        server.wait_ready()
        url = server.url + path
        bare, measured = run_client(url, measured=False), run_client(url, measured=True)
        assert measured["outcomes"] == bare["outcomes"], "the SDK's results and exceptions are unchanged"
        assert [o[1] for o in bare["outcomes"]].count("raised") == (0 if kind == "fastmcp" else 2)

        exposition = measured["exposition"]
        assert operations(exposition, MADE) == made
        assert sessions(exposition, "mcp_client_session_duration_seconds") == 1
        assert gauge(exposition, "mcp_client_session_active") == 0
        assert f'server_port="{server.port}"' in exposition and 'server_address="127.0.0.1"' in exposition

        twice = {key: 2 * count for key, count in served.items()}  # the bare run and the measured one
        text = wait_for(lambda: (t := local_http.get(server.metrics_url, timeout=5).text)
                        and operations(t, SERVED) == twice and t, f"served operations == {twice}")
        assert sessions(text, "mcp_server_session_duration_seconds") == 2, "initialize -> DELETE, twice"
        assert gauge(text, "mcp_server_session_active") == 0
        assert 'mcp_protocol_version="2025-11-25"' in text and 'network_protocol_version="1.1"' in text
        for spec in catalogue.MCP_SPECS:  # every MCP name of the catalogue, on the side that publishes it
            assert f"\n{spec.prometheus_name}" in (text if ".server." in spec.name else exposition), spec.name
    finally:
        assert server.stop() == 0, server.log()


def test_the_served_numbers_in_promql(prometheus):
    server = AppServer("tests.integration.mcp_apps:lowlevel_app")
    try:
        server.wait_ready()
        run_client(server.url + "/tools/rpc/", measured=False)
        prometheus.add_target(f"127.0.0.1:{server.metrics_port}")
        job = f'instance="127.0.0.1:{server.metrics_port}"'
        prometheus.wait_value(f"sum({SERVED}_count{{{job}}})", 9)
        assert prometheus.value(f'sum({SERVED}_count{{{job},mcp_method_name="tools/call"}})') == 4
        assert prometheus.value(f'sum({SERVED}_count{{{job},error_type!=""}})') == 2  # tool_error and code 0
        assert prometheus.value(f'sum({SERVED}_count{{{job},rpc_response_status_code="-32602",error_type=""}})') == 1
        prometheus.wait_value(f"sum(mcp_server_session_duration_seconds_count{{{job}}})", 1)  # another series
    finally:
        server.stop()
