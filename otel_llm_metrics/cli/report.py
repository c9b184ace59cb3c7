"""``report``: PNG plots of a ``record`` CSV, drawn with matplotlib, and a short report.md with the
headline figures. Every plot is drawn, with "no data" where the recording has none (no LLM traffic,
say), and carries its title in the PNG's metadata as well."""

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
    for file_name, title, unit, columns in PLOTS:
        figure, axes = plt.subplots(figsize=(8, 3.2), dpi=100)
        drawn = False
        for label, column in columns:
            values = _column(rows, column)
            if any(v is not None for v in values):
                axes.plot(elapsed, [float("nan") if v is None else v for v in values], label=label, marker=".")
                drawn = True
        if drawn:
            axes.legend(loc="upper left", fontsize="small")
        else:
            axes.text(0.5, 0.5, "no data in this recording", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(title)
        axes.set_xlabel("seconds since the recording started")
        axes.set_ylabel(unit)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(out / file_name, metadata={"Title": title})
        plt.close(figure)
    (out / "report.md").write_text(_markdown(rows, csv_path), encoding="utf-8")
    print(f"otel-llm-metrics report: {len(PLOTS)} plots and report.md in {out}")
    return 0


def _markdown(rows: list[dict[str, str]], csv_path: str) -> str:
    def values(column: str) -> list[float]:
        return [v for v in _column(rows, column) if v is not None]

    seconds = sum(values("seconds"))
    requests = sum(float(r["requests_per_s"] or 0) * float(r["seconds"] or 0) for r in rows)
    errors = sum(float(r["errors_per_s"] or 0) * float(r["seconds"] or 0) for r in rows)
    output_tokens = sum(float(r["output_tokens_per_s"] or 0) * float(r["seconds"] or 0) for r in rows)

    def stat(column: str, how: Any, fmt: str) -> str:
        found = values(column)
        return format(how(found), fmt) if found else "-"

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
    lines = ["# Load test report", "", f"From `{csv_path}`. Percentiles are interpolated inside histogram buckets,",
             "as PromQL's `histogram_quantile` does.", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in headline]
    lines.append("")
    for file_name, title, _, _ in PLOTS:
        lines += [f"## {title}", "", f"![{title}]({file_name})", ""]
    return "\n".join(lines)
