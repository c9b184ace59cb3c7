"""``report``: PNG plots of a ``record`` CSV, drawn with matplotlib, and a short report.md with the
headline figures. Every plot is drawn, with "no data" where the recording has none (no LLM traffic,
say), and carries its title in the PNG's metadata as well; the upstream calls plot only when the CSV has
its columns (a recording by an older version has not)."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

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
    plots = [*PLOTS, *([UPSTREAM_PLOT] if _has_upstream(rows) else [])]
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
    (out / "report.md").write_text(_markdown(rows, csv_path, plots), encoding="utf-8")
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


def _markdown(rows: list[dict[str, str]], csv_path: str, plots: list[tuple]) -> str:
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
    lines = ["# Load test report", "", f"From `{csv_path}`. Percentiles are interpolated inside histogram buckets,",
             "as PromQL's `histogram_quantile` does.", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in headline]
    lines.append("")
    for file_name, title, *_ in plots:
        lines += [f"## {title}", "", f"![{title}]({file_name})", ""]
    return "\n".join(lines)
