"""``record`` and ``report`` with MCP: the hand-written expositions of test_cli_mcp (read 10 s apart: the server
answered 10 search calls, 2 more marked isError and 2 initialize; as an agent, the app called lookup 12 times, 2 of
them answered -32602), recorded into the MCP table beside the CSV and reported over the whole recording. Expected
numbers are worked out by hand from the buckets."""

from __future__ import annotations

import csv
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from otel_llm_metrics.cli import Reading, main
from otel_llm_metrics.cli.interval import between
from otel_llm_metrics.cli.record import COLUMNS, MCP_COLUMNS, mcp_path, mcp_rows, row
from otel_llm_metrics.cli.report import mcp_operations, report
from tests.unit.test_cli_mcp import EARLIER, LATER

SEARCH_BUCKETS = "0.01=0 0.025=2 0.05=12 0.1=12 +Inf=12"  # 10 ok in 25-50 ms, 2 tool_error in 10-25 ms
LOOKUP_BUCKETS = "0.01=2 0.025=7 0.05=12 0.1=12 +Inf=12"  # first seen: all of it (2 -32602 below 10 ms)


def _interval(at: float = 110.0):
    return between(Reading.of([EARLIER], at=at - 10), Reading.of([LATER], at=at))


def test_mcp_path_puts_the_table_beside_the_csv():
    assert mcp_path("/tmp/load.csv") == "/tmp/load.mcp.csv"
    assert mcp_path("runs/load") == "runs/load.mcp.csv"


def test_an_interval_gives_one_row_per_side_method_and_tool_with_counts_percentiles_and_buckets():
    rows = {(r["side"], r["method"], r["tool"]): r for r in mcp_rows(_interval())}
    assert set(rows) == {("served", "tools/call", "search"), ("served", "initialize", ""),
                         ("called", "tools/call", "lookup")}
    assert all(set(r) == set(MCP_COLUMNS) for r in rows.values())
    search = rows[("served", "tools/call", "search")]
    assert (search["time"], search["seconds"], search["server"], search["prompt"]) == ("110.000", "10.000", "", "")
    assert (search["operations"], search["failed"], search["tool_errors"]) == ("12", "2", "2")
    assert search["errors"] == "tool_error=2", "the -32603 came before the interval"
    assert search["p50_ms"] == "35.00" and search["buckets"] == SEARCH_BUCKETS  # rank 6: 2 below, 10 in 25-50 ms
    lookup = rows[("called", "tools/call", "lookup")]
    assert (lookup["server"], lookup["operations"], lookup["failed"], lookup["tool_errors"]) == ("a.internal", "12",
                                                                                                "2", "0")
    assert lookup["errors"] == "-32602=2" and lookup["buckets"] == LOOKUP_BUCKETS
    initialize = rows[("served", "initialize", "")]
    assert (initialize["operations"], initialize["failed"], initialize["errors"]) == ("2", "0", "")


def test_several_error_types_and_idle_operations():
    since_start = between(Reading.of(["# nothing\n"], at=100.0), Reading.of([LATER], at=110.0))
    search = next(r for r in mcp_rows(since_start) if r["tool"] == "search")
    assert (search["operations"], search["failed"], search["errors"]) == ("22", "4", "-32603=1 tool_error=3")
    idle = between(Reading.of([LATER], at=100.0), Reading.of([LATER], at=110.0))
    assert idle.mcp and mcp_rows(idle) == [], "operations with none in the interval are left out"


class _Endpoint:
    """A real metrics endpoint on a free loopback port: the first scrape gets ``first``, every later one ``then``."""

    def __init__(self, first: str, then: str) -> None:
        pages = [first]
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                body = (pages.pop(0) if pages else then).encode()
                served.scrapes += 1
                self.send_response(200)
                self.send_header("content-type", "text/plain; version=0.0.4")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.scrapes = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[_Endpoint]:
    served = _Endpoint(EARLIER, LATER)
    yield served
    served.stop()


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_record_writes_the_mcp_table_beside_the_csv_for_the_intervals_that_had_operations(endpoint, tmp_path, capsys):
    path = tmp_path / "load.csv"
    assert main(["record", endpoint.url, "--csv", str(path), "--interval", "0.1", "--duration", "1"]) == 0
    main_rows = _read(path)
    assert len(main_rows) >= 2 and endpoint.scrapes == len(main_rows) + 1
    table = _read(tmp_path / "load.mcp.csv")
    assert {r["time"] for r in table} == {main_rows[0]["time"]}, "only the first interval had MCP operations"
    assert sorted((r["side"], r["method"], r["tool"], r["operations"]) for r in table) == [
        ("called", "tools/call", "lookup", "12"), ("served", "initialize", "", "2"),
        ("served", "tools/call", "search", "12")]
    assert f"3 MCP rows in {tmp_path / 'load.mcp.csv'}" in capsys.readouterr().err


def test_record_without_mcp_writes_no_table_and_removes_an_earlier_recordings(tmp_path):
    stale = tmp_path / "load.mcp.csv"
    stale.write_text("left by an earlier recording under the same name\n")
    served = _Endpoint("# nothing\n", "# nothing\n")
    try:
        assert main(["record", served.url, "--csv", str(tmp_path / "load.csv"), "--interval", "0.1",
                     "--duration", "0.5"]) == 0
    finally:
        served.stop()
    assert len(_read(tmp_path / "load.csv")) >= 1
    assert not stale.exists(), "report would have read it as this recording's"


def _recording(tmp_path: Path) -> Path:
    """Two intervals of 10 s with the same MCP traffic, and an idle third."""
    path = tmp_path / "load.csv"
    intervals = [_interval(110.0), _interval(120.0),
                 between(Reading.of([LATER], at=120.0), Reading.of([LATER], at=130.0))]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(row(i) for i in intervals)
    with open(mcp_path(str(path)), "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=MCP_COLUMNS)
        writer.writeheader()
        writer.writerows(r for i in intervals for r in mcp_rows(i))
    return path


def test_report_sums_the_mcp_table_over_the_recording_with_percentiles_from_the_summed_buckets(tmp_path):
    path = _recording(tmp_path)
    assert report(str(path), str(tmp_path / "out")) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| MCP operations served (failed, of which tool_error) | 28 (4, 4) |" in markdown, markdown
    assert "| MCP operations called (failed, of which tool_error) | 24 (4, 0) |" in markdown, markdown
    assert "### MCP tools this app serves" in markdown and "### MCP tools this app calls (as an agent)" in markdown
    # search: 24 operations, 4 in 10-25 ms and 20 in 25-50 ms; p95 at rank 22.8, as histogram_quantile interpolates
    p95 = f"{(0.025 + 0.025 * (0.95 * 24 - 4) / 20) * 1000:.0f} ms"
    assert f"| tools/call | search | 24 | 4 | 4 | tool_error: 4 | 35 ms | {p95} |" in markdown, markdown
    assert "| initialize | - | 4 | 0 | 0 | - | <=10 ms | <=10 ms |" in markdown, markdown
    # lookup: 4 below 10 ms, 10 in 10-25 ms (p50 there: too wide a bucket to name a value), 10 in 25-50 ms
    assert "| a.internal | tools/call | lookup | 24 | 4 | 0 | -32602: 4 | 10-25 ms | 47 ms |" in markdown, markdown
    assert "![MCP operations](mcp.png)" in markdown
    with Image.open(tmp_path / "out" / "mcp.png") as image:
        assert image.info.get("Title") == "MCP operations"
    assert operations_per_s(path) == {"served": [1.4, 1.4, 0.0], "called": [1.2, 1.2, 0.0]}  # 14 and 12 in 10 s


def operations_per_s(path: Path) -> dict[str, list[float]]:
    """The MCP plot's series, as report puts them on the main rows."""
    from otel_llm_metrics.cli.report import _mcp_rates, read_mcp

    rows = _read(path)
    _mcp_rates(rows, read_mcp(mcp_path(str(path))))
    return {side: [float(r[f"mcp_{side}_operations_per_s"]) for r in rows] for side in ("served", "called")}


def test_mcp_operations_keep_the_order_watch_shows():
    table = [r for i in (_interval(110.0),) for r in mcp_rows(i)]
    sides = mcp_operations(list(reversed(table)))
    assert [o.key for o in sides["served"]] == [("", "initialize", "", ""), ("", "tools/call", "search", "")]
    assert list(sides) == ["served", "called"]


def test_a_recording_without_an_mcp_table_reports_as_before(tmp_path):
    path = _recording(tmp_path)
    Path(mcp_path(str(path))).unlink()
    assert report(str(path), str(tmp_path / "out")) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "MCP" not in markdown and not (tmp_path / "out" / "mcp.png").exists()
    assert (tmp_path / "out" / "latency.png").exists()
