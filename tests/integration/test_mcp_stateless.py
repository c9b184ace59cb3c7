"""Stateless MCP servers end to end: FastMCP with ``stateless_http=True`` (SSE answers) and the SDK's
``StreamableHTTPSessionManager(stateless=True)`` (JSON answers), served under ``opentelemetry-instrument uvicorn``
and called by the zero-code agent (tests/integration/mcp_agent.py). No answer carries an ``Mcp-Session-Id``: each
operation is counted exactly on both sides, and neither side opens a session (none ended, none left open)."""

from __future__ import annotations

import pytest

from tests import local_http
from tests.integration.servers import AppServer, wait_for
from tests.integration.test_mcp import SERVED, gauge, operations, sessions
from tests.integration.test_mcp_zero_code_client import COMMON, OPEN, OPERATION, SESSION, latest, run_agent
from tests.integration.test_mcp_zero_code_client import operations as made_operations
from tests.otlp_receiver import Receiver

pytestmark = pytest.mark.integration
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "probe", "version": "1"}}}
# app, path, the agent's operations as made, as served (an unknown tool: see test_mcp_zero_code_client)
SERVERS = {
    "fastmcp": ("fastmcp_stateless_app", "/mcp/", {**COMMON, ("tools/call", "nosuch", "tool_error", ""): 1},
                {**COMMON, ("tools/call", "nosuch", "tool_error", ""): 1}),
    "lowlevel": ("lowlevel_stateless_app", "/stateless/rpc/",
                 {**COMMON, ("tools/call", "nosuch", "-32602", "-32602"): 1},
                 {**COMMON, ("tools/call", "nosuch", "", "-32602"): 1}),
}


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_stateless_server_and_its_agent_count_every_operation_and_open_no_session(kind):
    app, path, made, served = SERVERS[kind]
    server = AppServer(f"tests.integration.mcp_apps:{app}")
    receiver = Receiver()
    try:
        server.wait_ready()
        probe = local_http.post(server.url + path, json=INITIALIZE, timeout=10,
                           headers={"accept": "application/json, text/event-stream"})
        assert probe.status_code == 200 and "mcp-session-id" not in probe.headers, probe.headers
        assert '"protocolVersion":"2025-11-25"' in probe.text.replace(" ", ""), probe.text

        outcomes = run_agent(server.url + path, receiver)
        assert [name for name, *_ in outcomes] == ["initialize", "tools/list", "add", "refuse", "nosuch"]
        assert outcomes[3] == ["refuse", "isError"], outcomes

        points = latest(receiver)
        assert dict(made_operations(points.get(OPERATION, []))) == made
        assert SESSION not in points, "the agent opened no session"
        assert all(p.as_int == 0 for p in points.get(OPEN, [])), "and holds none open"

        expected = {**served, ("initialize", "", "", ""): 2}  # the probe's and the agent's
        text = wait_for(lambda: (t := local_http.get(server.metrics_url, timeout=5).text)
                        and operations(t, SERVED) == expected and t, f"served operations == {expected}")
        assert sessions(text, "mcp_server_session_duration_seconds") == 0, "no session ended: none was opened"
        assert gauge(text, "mcp_server_session_active") == 0, "none open"
    finally:
        receiver.stop()
        assert server.stop() == 0, server.log()
