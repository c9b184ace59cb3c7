"""``report``: PNG plots of a ``record`` CSV, drawn with matplotlib, and a short report.md with the
headline figures. Every plot is drawn, with "no data" where the recording has none (no LLM traffic,
say), and carries its title in the PNG's metadata as well; the upstream calls plot only when the CSV has
its columns (a recording by an older version has not). When the recording has an MCP table beside it
(``FILE.mcp.csv``), report.md gets the MCP operations by side, method and tool over the whole recording
(count, failed by type, tool_error, p50/p95 from the summed buckets) and an MCP plot."""

from __future__ import annotations

import csv
import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .mcp import CALLED, SIDES, TITLES, McpOperations, named
from .readings import HistogramData
from .record import mcp_path

PLOTS = (  # file, title, y label, columns (label, CSV column)
    ("throughput.png", "Throughput", "per second", (("requests", "requests_per_s"), ("errors", "errors_per_s"))),
    ("latency.png", "Request latency", "ms", (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"),
                                              ("p99", "latency_p99_ms"))),
    ("time_to_first_token.png", "Time to first token", "ms", (("p50", "ttft_p50_ms"), ("p95", "ttft_p95_ms"),
                                                              ("stream first byte p95", "first_byte_p95_ms"))),
    ("tokens.png", "Tokens per second", "tokens/s", (("input", "input_tokens_per_s"),
                                                     ("output", "output_tokens_per_s"))),
    ("in_flight.png", "Requests in flight", "requests", (("in flight", "in_flight"), ("peak", "peak"))),
    ("cpu_memory.png", "CPU and memory", "CPU % of a core / resident MiB", (("CPU %", "cpu_percent"),
                                                                            ("resident MiB", "rss_mib"))),
)
# Drawn when the recording has its columns (a CSV of an older record has not): calls on the left axis, ms on the right.
UPSTREAM_PLOT = ("upstream.png", "Upstream LLM calls and app overhead", "per second",
                 (("calls", "upstream_calls_per_s"), ("attempts", "upstream_attempts_per_s"),
                  ("attempt errors", "upstream_errors_per_s")),
                 "ms", (("upstream p95", "upstream_p95_ms"), ("overhead p50", "overhead_p50_ms"),
                        ("overhead p95", "overhead_p95_ms")))
# Drawn when the recording has an MCP table: operations and failed ones per second, per side that had any.
MCP_PLOT = ("mcp.png", "MCP operations", "per second",
            tuple((f"{side}{kind}", f"mcp_{side}_{column}_per_s") for side in SIDES
                  for kind, column in (("", "operations"), (" failed", "failed"))))


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("otel-llm-metrics report needs matplotlib: pip install 'otel-llm-metrics[cli]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _column(rows: list[dict[str, str]], name: str) -> list[float | None]:
    return [float(r[name]) if r.get(name) not in (None, "") else None for r in rows]


def report(csv_path: str, out_dir: str) -> int:
    plt = _pyplot()
    with open(csv_path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise SystemExit(f"otel-llm-metrics report: {csv_path} has no rows (record for longer than one interval)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = float(rows[0]["time"]) - float(rows[0]["seconds"] or 0)
    elapsed = [float(r["time"]) - start for r in rows]
    mcp = read_mcp(mcp_path(csv_path))
    _mcp_rates(rows, mcp)
    plots = [*PLOTS, *([UPSTREAM_PLOT] if _has_upstream(rows) else []), *([MCP_PLOT] if mcp else [])]
    for file_name, title, unit, columns, *right in plots:
        figure, axes = plt.subplots(figsize=(8, 3.2), dpi=100)
        drawn = _lines(axes, elapsed, rows, columns, "upper left")
        if right:
            twin = axes.twinx()
            twin.set_ylabel(right[0])
            drawn = _lines(twin, elapsed, rows, right[1], "upper right", len(columns)) or drawn
        if not drawn:
            axes.text(0.5, 0.5, "no data in this recording", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(title)
        axes.set_xlabel("seconds since the recording started")
        axes.set_ylabel(unit)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(out / file_name, metadata={"Title": title})
        plt.close(figure)
    (out / "report.md").write_text(_markdown(rows, csv_path, plots, mcp), encoding="utf-8")
    print(f"otel-llm-metrics report: {len(plots)} plots and report.md in {out}")
    return 0


def _has_upstream(rows: list[dict[str, str]]) -> bool:
    return all(column in rows[0] for _, column in UPSTREAM_PLOT[3] + UPSTREAM_PLOT[5])


def _lines(axes: Any, elapsed: list[float], rows: list[dict[str, str]], columns: tuple, where: str,
           colour: int = 0) -> bool:
    """Plot the columns that have data (colours numbered on from ``colour``); False when none had any."""
    drawn = False
    for i, (label, column) in enumerate(columns):
        values = _column(rows, column)
        if any(v is not None for v in values):
            axes.plot(elapsed, [float("nan") if v is None else v for v in values], label=label, marker=".",
                      color=f"C{colour + i}")
            drawn = True
    if drawn:
        axes.legend(loc=where, fontsize="small")
    return drawn


def read_mcp(path: str) -> list[dict[str, str]]:
    """The rows of a recording's MCP table; none when it has no table (no MCP traffic, or an older record)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _pairs(text: str) -> dict[str, float]:
    """``name=count`` pairs separated by spaces (the record's errors and buckets columns)."""
    out: dict[str, float] = {}
    for pair in text.split():
        name, _, count = pair.rpartition("=")
        out[name] = out.get(name, 0.0) + float(count)
    return out


def mcp_operations(mcp: list[dict[str, str]]) -> dict[str, list[McpOperations]]:
    """The recording's MCP rows summed per side, server, method and tool or prompt: counts over the whole recording,
    and the durations as one histogram (bucket counts add up across intervals), in the order ``watch`` shows them."""
    groups: dict[str, dict[tuple, McpOperations]] = defaultdict(dict)
    for r in mcp:
        key = (r["server"], r["method"], r["tool"], r["prompt"])
        o = groups[r["side"]].get(key)
        if o is None:
            o = groups[r["side"]][key] = McpOperations(*key, 0.0, 0.0, 0.0, {}, HistogramData())
        operations = float(r["operations"] or 0)
        o.operations += operations
        o.failed += float(r["failed"] or 0)
        o.tool_errors += float(r["tool_errors"] or 0)
        for kind, count in _pairs(r["errors"]).items():
            o.errors[kind] = o.errors.get(kind, 0.0) + count
        buckets = {float(bound): count for bound, count in _pairs(r["buckets"]).items()}  # float("+Inf") is inf
        o.duration.add(HistogramData(buckets, operations))
    return {side: [o for _, o in sorted(groups[side].items())] for side in SIDES if side in groups}


def _mcp_rates(rows: list[dict[str, str]], mcp: list[dict[str, str]]) -> None:
    """The MCP plot's columns on the main rows, per second: 0 in an interval without MCP rows (only intervals with
    operations have them), nothing for a side the recording never saw."""
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    for r in mcp:
        totals[(r["time"], r["side"], "operations")] += float(r["operations"] or 0)
        totals[(r["time"], r["side"], "failed")] += float(r["failed"] or 0)
    for side in {r["side"] for r in mcp}:
        for row in rows:
            seconds = float(row["seconds"] or 0)
            for column in ("operations", "failed"):
                count = totals.get((row["time"], side, column), 0.0)
                row[f"mcp_{side}_{column}_per_s"] = f"{count / seconds:.3f}" if seconds else ""


def _mcp_markdown(sides: dict[str, list[McpOperations]], csv_path: str) -> list[str]:
    """One table per side: each method and tool over the whole recording."""
    lines = ["## MCP operations by method and tool", "", f"From `{mcp_path(csv_path)}`, over the whole recording: "
             "counts, and percentiles from the bucket counts summed over its intervals.", ""]
    for side, operations in sides.items():
        server = ("server",) if side == CALLED else ()
        columns = (*server, "method", "tool", "operations", "failed", "tool_error", "errors by type", "p50", "p95")
        lines += [f"### {TITLES[side]}", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * (len(server) + 2) + "---:|" * 3 + "---|" + "---:|" * 2]
        for o in operations:
            errors = ", ".join(f"{kind}: {n:.0f}" for kind, n in o.errors.items()) or "-"
            cells = (*((o.server or "-",) if server else ()), o.method or "-", named(o), f"{o.operations:.0f}",
                     f"{o.failed:.0f}", f"{o.tool_errors:.0f}", errors, o.duration.describe(0.5),
                     o.duration.describe(0.95))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _markdown(rows: list[dict[str, str]], csv_path: str, plots: list[tuple], mcp: list[dict[str, str]]) -> str:
    def values(column: str) -> list[float]:
        return [v for v in _column(rows, column) if v is not None]

    def total(column: str) -> float:
        return sum(float(r.get(column) or 0) * float(r["seconds"] or 0) for r in rows)

    seconds = sum(values("seconds"))
    requests, errors, output_tokens = total("requests_per_s"), total("errors_per_s"), total("output_tokens_per_s")

    def stat(column: str, how: Any, fmt: str) -> str:
        found = values(column)
        return format(how(found), fmt) if found else "-"

    def known(column: str) -> str:
        """A total over the recording; "-" when no interval reported it (calls measured from spans: no attempts)."""
        return f"{total(column):.0f}" if values(column) else "-"

    headline = [
        ("recorded", f"{seconds:.0f} s in {len(rows)} intervals"),
        ("requests", f"{requests:.0f} ({errors:.0f} errors)"),
        ("throughput, mean / highest interval", f"{requests / seconds if seconds else 0:.1f} / "
                                                f"{stat('requests_per_s', max, '.1f')} req/s"),
        ("latency p95, median over intervals / worst", f"{stat('latency_p95_ms', statistics.median, '.1f')} / "
                                                       f"{stat('latency_p95_ms', max, '.1f')} ms"),
        ("time to first token p95, median / worst", f"{stat('ttft_p95_ms', statistics.median, '.1f')} / "
                                                    f"{stat('ttft_p95_ms', max, '.1f')} ms"),
        ("output tokens", f"{output_tokens:.0f} ({output_tokens / seconds if seconds else 0:.1f}/s)"),
        ("most in flight (peak)", stat("peak", max, ".0f")),
        ("CPU, mean / highest", f"{stat('cpu_percent', statistics.mean, '.0f')} / "
                                f"{stat('cpu_percent', max, '.0f')} % of a core"),
        ("resident memory, highest", f"{stat('rss_mib', max, '.0f')} MiB"),
    ]
    if _has_upstream(rows) and values("upstream_calls_per_s"):
        headline += [
            ("upstream calls (attempts, failed attempts)",
             f"{total('upstream_calls_per_s'):.0f} ({known('upstream_attempts_per_s')}, "
             f"{known('upstream_errors_per_s')})"),
            ("upstream p95, median / worst", f"{stat('upstream_p95_ms', statistics.median, '.1f')} / "
                                             f"{stat('upstream_p95_ms', max, '.1f')} ms"),
            ("app overhead p95, median / worst", f"{stat('overhead_p95_ms', statistics.median, '.1f')} / "
                                                 f"{stat('overhead_p95_ms', max, '.1f')} ms"),
        ]
    sides = mcp_operations(mcp)
    for side, operations in sides.items():
        count = sum(o.operations for o in operations)
        headline.append((f"MCP operations {side} (failed, of which tool_error)",
                         f"{count:.0f} ({sum(o.failed for o in operations):.0f}, "
                         f"{sum(o.tool_errors for o in operations):.0f})"))
    lines = ["# Load test report", "", f"From `{csv_path}`. Percentiles are interpolated inside histogram buckets,",
             "as PromQL's `histogram_quantile` does.", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in headline]
    lines.append("")
    if sides:
        lines += _mcp_markdown(sides, csv_path)
    for file_name, title, *_ in plots:
        lines += [f"## {title}", "", f"![{title}]({file_name})", ""]
    return "\n".join(lines)
