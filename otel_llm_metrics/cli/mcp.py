"""MCP operations (docs/mcp.md): the ones this app serves, and the ones it makes as an agent, per server, method and
tool or prompt; with the sessions open now and the durations of those that ended. What ``watch``, ``snapshot`` and
``summary`` show next to the models.

The same grouping serves totals since start (a parsed exposition) and one interval (bucket deltas): the caller hands
in the series, by Prometheus name, that it wants counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .. import catalogue as c
from .readings import HistogramData, Histograms, Samples, label, merged

SERVED, CALLED = "served", "called"
SIDES = (SERVED, CALLED)
OPERATIONS = {SERVED: c.MCP_SERVER_OPERATION_DURATION, CALLED: c.MCP_CLIENT_OPERATION_DURATION}
SESSIONS = {SERVED: c.MCP_SERVER_SESSION_DURATION, CALLED: c.MCP_CLIENT_SESSION_DURATION}
OPEN = {SERVED: c.MCP_SERVER_SESSIONS, CALLED: c.MCP_CLIENT_SESSIONS}
HISTOGRAMS = (*OPERATIONS.values(), *SESSIONS.values())
GAUGES = tuple(OPEN.values())
TITLES = {SERVED: "MCP tools this app serves", CALLED: "MCP tools this app calls (as an agent)"}
TOOL_ERROR = "tool_error"  # a tool result with isError: true
_METHOD, _TOOL, _PROMPT, _SERVER, _ERROR = (c.prometheus_label(a) for a in (
    c.MCP_METHOD, c.GEN_AI_TOOL_NAME, c.GEN_AI_PROMPT_NAME, c.SERVER_ADDRESS, c.ERROR_TYPE))


@dataclass
class McpOperations:
    """One server (called side; "" served), method and tool or prompt: counts (since start or over an interval)."""

    server: str
    method: str
    tool: str  # gen_ai.tool.name of tools/call; ""
    prompt: str  # gen_ai.prompt.name of prompts/get; ""
    operations: float
    failed: float  # ended with an error.type, tool_error included
    tool_errors: float  # tool results marked isError
    errors: dict[str, float]  # failed operations by error.type
    duration: HistogramData

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.server, self.method, self.tool, self.prompt


@dataclass
class McpSide:
    """What one side (served or called) reported: its operations and sessions."""

    side: str
    operations: list[McpOperations] = field(default_factory=list)
    open_sessions: float | None = None  # None: the gauge was not reported
    sessions: HistogramData = field(default_factory=HistogramData)  # sessions that ended: their durations

    @property
    def failed(self) -> float:
        return sum(o.failed for o in self.operations)

    @property
    def total(self) -> float:
        return sum(o.operations for o in self.operations)


def _group(key: tuple, side: str) -> tuple[str, str, str, str]:
    server = label(key, _SERVER, "") if side == CALLED else ""
    return server, label(key, _METHOD, ""), label(key, _TOOL, ""), label(key, _PROMPT, "")


def mcp_sides(histograms: Histograms, samples: Samples) -> dict[str, McpSide]:
    """The sides that reported anything (``SERVED``, ``CALLED``), from the series of ``HISTOGRAMS`` and ``GAUGES``."""
    found: dict[str, McpSide] = {}
    for side in SIDES:
        durations = histograms.get(OPERATIONS[side].prometheus_name, {})
        sessions = histograms.get(SESSIONS[side].prometheus_name, {})
        gauge = samples.get(OPEN[side].prometheus_name)
        if not durations and not sessions and gauge is None:
            continue
        out = McpSide(side, open_sessions=sum(gauge.values()) if gauge is not None else None,
                      sessions=merged(sessions))
        groups: dict[tuple, dict[tuple, HistogramData]] = defaultdict(dict)
        for key, data in durations.items():
            groups[_group(key, side)][key] = data
        for group, series in sorted(groups.items()):
            errors: dict[str, float] = defaultdict(float)
            for key, data in series.items():
                if data.count and label(key, _ERROR, ""):  # a type seen before but not in this interval: none
                    errors[label(key, _ERROR)] += data.count
            duration = merged(series)
            out.operations.append(McpOperations(*group, duration.count, sum(errors.values(), 0.0),
                                                errors.get(TOOL_ERROR, 0.0), dict(sorted(errors.items())), duration))
        found[side] = out
    return found


def named(o: McpOperations) -> str:
    """The tool or prompt of an operation, or "-"."""
    return o.tool or o.prompt or "-"
