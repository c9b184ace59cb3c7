"""An agent with no telemetry code (tests/integration/mcp_agent.py) under ``opentelemetry-instrument python``,
calling the MCP test servers (served bare: only the agent is measured) with the ``mcp`` SDK's streamable-HTTP
client. What it exports over OTLP/HTTP to a real receiver, at its exit, is exact: one operation per call by method,
tool and error.type, one session (initialize -> DELETE) none still open, each with the server's address and port."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.servers import BIN, ROOT, AppServer
from tests.otlp_receiver import Receiver, attributes_of

pytestmark = pytest.mark.integration
AGENT = Path(__file__).with_name("mcp_agent.py")
OPERATION, SESSION, OPEN = "mcp.client.operation.duration", "mcp.client.session.duration", "mcp.client.session.active"
# (method, tool, error.type, rpc.response.status_code) -> operations of one agent run
COMMON = {("initialize", "", "", ""): 1, ("notifications/initialized", "", "", ""): 1, ("tools/list", "", "", ""): 1,
          ("tools/call", "add", "", ""): 1, ("tools/call", "refuse", "tool_error", ""): 1}
# An unknown tool: FastMCP answers a tool result marked isError, the low-level server the JSON-RPC error -32602,
# which on the calling side is an error (the caller's mistake is not counted as one only where it is served).
SERVERS = {"fastmcp": ("fastmcp_app", "/mcp/", {**COMMON, ("tools/call", "nosuch", "tool_error", ""): 1}, "isError"),
           "lowlevel": ("lowlevel_app", "/tools/rpc/", {**COMMON, ("tools/call", "nosuch", "-32602", "-32602"): 1},
                        "raised MCPError")}


def run_agent(url: str, receiver: Receiver) -> list:
    """The agent under ``opentelemetry-instrument``, pushing OTLP/HTTP to ``receiver``; what its calls returned.

    The push interval is 10 minutes: what arrives is the push at exit. (A short one adds nothing here, and on a busy
    machine its collection can overrun the interval, which the SDK logs with a traceback.)"""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env = {**base, "PYTHONPATH": str(ROOT), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
    done = subprocess.run([str(BIN / "opentelemetry-instrument"), "python", str(AGENT), url], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def latest(receiver: Receiver) -> dict[str, list]:
    """Each metric's points in the last export that carried it (cumulative: the totals at the agent's exit)."""
    assert not receiver.errors, receiver.errors
    found: dict[str, list] = {}
    for request in receiver.metrics_requests():
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found[metric.name] = list(getattr(metric, metric.WhichOneof("data")).data_points)
    return found


def operations(points: list) -> Counter:
    """Operations by (method, tool, error.type, rpc.response.status_code)."""
    counts: Counter = Counter()
    for point in points:
        got = attributes_of(point.attributes)
        counts[(got["mcp.method.name"], got.get("gen_ai.tool.name", ""), got.get("error.type", ""),
                got.get("rpc.response.status_code", ""))] += point.count
    return counts


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_an_agent_under_opentelemetry_instrument_exports_its_mcp_calls_and_session_exactly(kind):
    app, path, expected, unknown_tool = SERVERS[kind]
    server = AppServer(f"tests.integration.mcp_apps:{app}", zero_code=False)
    receiver = Receiver()
    try:
        server.wait_ready()
        outcomes = run_agent(server.url + path, receiver)
        assert outcomes == [["initialize", "2025-11-25"], ["tools/list", ["add", "explode", "refuse"]],
                            ["add", "ok"], ["refuse", "isError"], ["nosuch", unknown_tool]], "what the agent saw"

        points = latest(receiver)
        assert dict(operations(points.get(OPERATION, []))) == expected
        where = {"server.address": "127.0.0.1", "server.port": server.port}
        for point in points[OPERATION]:
            got = attributes_of(point.attributes)
            assert {k: got.get(k) for k in where} == where, got
            assert got["mcp.protocol.version"] == "2025-11-25" and got["network.protocol.version"] == "1.1", got
            assert (got.get("gen_ai.operation.name") == "execute_tool") == (got["mcp.method.name"] == "tools/call")

        (session,) = points.get(SESSION, [])
        assert session.count == 1, "initialize -> DELETE"
        assert {k: attributes_of(session.attributes).get(k) for k in where} == where
        assert [(attributes_of(p.attributes)["server.port"], p.as_int) for p in points[OPEN]] == [(server.port, 0)]
    finally:
        receiver.stop()
        assert server.stop() == 0, server.log()
