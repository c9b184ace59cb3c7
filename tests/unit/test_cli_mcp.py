"""The CLI's view of MCP, served and called: a hand-written exposition, read twice 10 s apart.

Between the two readings the server answered 10 calls of the tool search, 2 more that returned isError, and 2
initialize; the one search call that failed with -32603 came before. It ended 2 sessions (each between 5 and 10 s)
and has 3 open. As an agent, the app called the tool lookup at a.internal 12 times, 2 answered -32602 (first seen in
the later reading: all of it is new). The expected numbers are worked out by hand from the buckets.
"""

from __future__ import annotations

import pytest

from otel_llm_metrics.cli import Reading, snapshot, summary
from otel_llm_metrics.cli.interval import between
from otel_llm_metrics.cli.watch import mcp_row, screen

SCOPE = 'otel_scope_name="otel_llm_metrics",otel_scope_version=""'
SERVED, CALLED = "mcp_server_operation_duration_seconds", "mcp_client_operation_duration_seconds"
SESSIONS = "mcp_server_session_duration_seconds"
SEARCH = 'gen_ai_operation_name="execute_tool",gen_ai_tool_name="search",mcp_method_name="tools/call"'
INIT = 'gen_ai_operation_name="",gen_ai_tool_name="",mcp_method_name="initialize"'
LOOKUP = 'gen_ai_tool_name="lookup",mcp_method_name="tools/call",server_address="a.internal",server_port="443"'
OK, TOOL_ERROR = 'error_type="",rpc_response_status_code=""', 'error_type="tool_error",rpc_response_status_code=""'
INTERNAL = 'error_type="-32603",rpc_response_status_code="-32603"'
INVALID = 'error_type="-32602",rpc_response_status_code="-32602"'
BUCKETS = (0.01, 0.025, 0.05, 0.1)  # of catalogue.MCP_OPERATION_BUCKETS
SESSION_BUCKETS = (1.0, 5.0, 10.0)


def _histogram(name: str, labels: str, bounds: tuple[float, ...], cumulative: tuple[float, ...], total: float) -> str:
    lines = [f'{name}_bucket{{{labels},{SCOPE},le="{bound}"}} {count}'
             for bound, count in zip(bounds, cumulative, strict=True)]
    lines += [f'{name}_bucket{{{labels},{SCOPE},le="+Inf"}} {cumulative[-1]}',
              f"{name}_count{{{labels},{SCOPE}}} {cumulative[-1]}", f"{name}_sum{{{labels},{SCOPE}}} {total}"]
    return "\n".join(lines)


def _gauge(name: str, labels: str, value: float) -> str:
    return f"# TYPE {name} gauge\n{name}{{{labels}{',' if labels else ''}{SCOPE}}} {value}"


EARLIER = "\n".join([
    f"# TYPE {SERVED} histogram",
    _histogram(SERVED, f"{SEARCH},{OK}", BUCKETS, (2, 6, 8, 8), 0.15),
    _histogram(SERVED, f"{SEARCH},{TOOL_ERROR}", BUCKETS, (0, 1, 1, 1), 0.02),
    _histogram(SERVED, f"{SEARCH},{INTERNAL}", BUCKETS, (0, 0, 1, 1), 0.04),
    _histogram(SERVED, f"{INIT},{OK}", BUCKETS, (2, 2, 2, 2), 0.01),
    f"# TYPE {SESSIONS} histogram",
    _histogram(SESSIONS, 'mcp_protocol_version="2025-11-25"', SESSION_BUCKETS, (0, 1, 1), 3.0),
    _gauge("mcp_server_session_active", 'mcp_protocol_version="2025-11-25"', 2),
]) + "\n"

LATER = "\n".join([
    f"# TYPE {SERVED} histogram",
    _histogram(SERVED, f"{SEARCH},{OK}", BUCKETS, (2, 6, 18, 18), 0.5),
    _histogram(SERVED, f"{SEARCH},{TOOL_ERROR}", BUCKETS, (0, 3, 3, 3), 0.06),
    _histogram(SERVED, f"{SEARCH},{INTERNAL}", BUCKETS, (0, 0, 1, 1), 0.04),
    _histogram(SERVED, f"{INIT},{OK}", BUCKETS, (4, 4, 4, 4), 0.02),
    f"# TYPE {SESSIONS} histogram",
    _histogram(SESSIONS, 'mcp_protocol_version="2025-11-25"', SESSION_BUCKETS, (0, 1, 3), 18.0),
    _gauge("mcp_server_session_active", 'mcp_protocol_version="2025-11-25"', 3),
    f"# TYPE {CALLED} histogram",
    _histogram(CALLED, f"{LOOKUP},{OK}", BUCKETS, (0, 5, 10, 10), 0.3),
    _histogram(CALLED, f"{LOOKUP},{INVALID}", BUCKETS, (2, 2, 2, 2), 0.01),
    _gauge("mcp_client_session_active", 'server_address="a.internal",server_port="443"', 1),
]) + "\n"


def _interval():
    return between(Reading.of([EARLIER], at=100.0), Reading.of([LATER], at=110.0))


def test_an_interval_gives_mcp_operations_failures_and_tool_errors_per_second_per_method_and_tool():
    interval = _interval()
    served = {o.key: o for o in interval.mcp["served"].operations}
    search, init = served[("", "tools/call", "search", "")], served[("", "initialize", "", "")]
    assert interval.per_s(search.operations) == pytest.approx(1.2)
    assert interval.per_s(search.failed) == pytest.approx(0.2) and interval.per_s(search.tool_errors) == 0.2
    assert search.errors == {"tool_error": 2.0}, "the -32603 came before the interval"
    assert search.duration.quantile(0.5) == pytest.approx(0.035)  # rank 6 of 12; 2 below 25 ms, 10 in 25-50 ms
    assert interval.per_s(init.operations) == pytest.approx(0.2) and init.failed == 0
    assert interval.mcp["served"].open_sessions == 3
    assert interval.mcp["served"].sessions.count == 2 and interval.mcp["served"].sessions.quantile(0.5) == 7.5
    (lookup,) = interval.mcp["called"].operations
    assert lookup.key == ("a.internal", "tools/call", "lookup", "")
    assert (lookup.operations, lookup.failed, lookup.tool_errors) == (12, 2, 0), "first seen: all of it is new"
    assert lookup.errors == {"-32602": 2.0}
    assert interval.mcp["called"].open_sessions == 1 and interval.mcp["called"].sessions.count == 0


def test_the_watch_screen_shows_mcp_tools_next_to_the_models():
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(screen(_interval(), ["http://x/metrics"], ""))
    text = console.export_text()
    assert "MCP tools this app serves" in text and "MCP tools this app calls (as an agent)" in text
    search = next(line for line in text.splitlines() if "search" in line).split()
    assert search[:7] == ["tools/call", "search", "1.2", "0.2", "0.2", "tool_error", "0.2"], search
    assert search[7:9] == ["35", "ms"], search
    lookup = next(line for line in text.splitlines() if "lookup" in line).split()
    assert lookup[:8] == ["a.internal", "tools/call", "lookup", "1.2", "0.2", "0.0", "-32602", "0.2"], lookup
    assert "sessions open 3, ended 0.2/s, duration p50 7500 ms" in text
    assert "sessions open 1, ended 0.0/s, duration p50 -" in text


def test_the_first_watch_screen_has_no_mcp_rates_and_an_app_without_mcp_shows_none():
    first = between(None, Reading.of([LATER], at=110.0))
    (lookup,) = first.mcp["called"].operations
    assert mcp_row(first, lookup, called=True)[3:7] == ("-", "-", "-", "-"), "totals since start are not rates"
    nothing = between(None, Reading.of(["# nothing\n"], at=110.0))
    assert nothing.mcp == {}


def test_snapshot_json_gives_mcp_per_side_with_rates_since_the_state_and_reads_an_older_state():
    earlier = snapshot(EARLIER, now=100.0)
    shot = snapshot(LATER, previous=earlier, now=110.0)
    assert shot["schema"] == "otel-llm-metrics.snapshot/1", "fields added, the schema name kept"
    totals = shot["totals"]
    assert (totals["mcp_served_operations"], totals["mcp_served_failed"]) == (26, 4)
    assert (totals["mcp_called_operations"], totals["mcp_called_failed"]) == (12, 2)
    assert shot["rates"]["mcp_served_operations_per_s"] == pytest.approx(1.4)
    served = {(o["method"], o["tool"]): o for o in shot["mcp"]["served"]["operations"]}
    search = served[("tools/call", "search")]
    assert search["server"] is None and search["prompt"] is None
    assert (search["operations"], search["failed"], search["tool_errors"]) == (22, 4, 3)
    assert search["errors"] == {"-32603": 1.0, "tool_error": 3.0}
    assert search["duration_s"]["p50"]["bucket"] == [0.025, 0.05]
    assert search["rates"] == {"operations_per_s": pytest.approx(1.2), "failed_per_s": pytest.approx(0.2),
                               "tool_errors_per_s": pytest.approx(0.2),
                               "errors_per_s": {"-32603": 0.0, "tool_error": pytest.approx(0.2)}}
    assert shot["mcp"]["served"]["open_sessions"] == 3 and shot["mcp"]["served"]["sessions_ended"] == 3
    (lookup,) = shot["mcp"]["called"]["operations"]
    assert (lookup["server"], lookup["tool"], lookup["operations"]) == ("a.internal", "lookup", 12)
    assert lookup["rates"]["operations_per_s"] == pytest.approx(1.2), "none of its calls in the earlier snapshot"
    assert earlier["mcp"]["called"] is None, "a side that reported nothing is null"

    older = {k: v for k, v in earlier.items() if k != "mcp"}  # a state written before MCP was in the schema
    older["totals"] = {k: v for k, v in earlier["totals"].items() if not k.startswith("mcp_")}
    shot = snapshot(LATER, previous=older, now=110.0)
    assert shot["mcp"]["served"]["operations"][0]["rates"] is None
    assert shot["rates"]["mcp_served_operations_per_s"] is None and shot["rates"]["requests_per_s"] == 0.0


def test_summary_lists_mcp_tools_since_start_and_an_app_without_mcp_has_no_mcp_lines():
    text = summary(LATER)
    search = next(line for line in text.splitlines() if "search" in line)
    assert "tools/call" in search and "22  failed 4 (-32603: 1, tool_error: 3)  tool_error 3" in search
    assert "  sessions: open 3, ended 3, duration p50 6250 ms, p95 9625 ms" in text  # 1 in 1-5 s, 2 in 5-10 s
    assert "a.internal  tools/call" in text
    assert "MCP" not in summary("# nothing\n")
