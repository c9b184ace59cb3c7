"""``record``: one CSV row per interval during a load test, for ``report`` to plot.

Each row covers the time since the previous one: rates, percentiles from bucket deltas
(interpolated inside their bucket, as PromQL's histogram_quantile does; blank when nothing was
observed), in flight, tokens/s, CPU and memory. Rows are flushed as written, so stopping at the
duration, by Ctrl-C or by a kill never loses the rows already there.

MCP operations have a table of their own beside it (``FILE.mcp.csv``, written once the app reports any): one row per
interval, side, server, method and tool or prompt that had operations in it, from the grouping ``watch`` and
``snapshot`` use (``cli.mcp``), with the interval's bucket counts so that ``report`` gives percentiles over the
whole recording rather than a median of medians.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from .interval import Interval, between
from .mcp import McpOperations
from .readings import HistogramData, Reading, read_all

COLUMNS = ("time", "seconds", "requests_per_s", "errors_per_s", "latency_p50_ms", "latency_p95_ms",
           "latency_p99_ms", "in_flight", "peak", "first_byte_p50_ms", "first_byte_p95_ms", "ttft_p50_ms",
           "ttft_p95_ms", "time_per_output_token_mean_ms", "input_tokens_per_s", "output_tokens_per_s",
           "cpu_percent", "rss_mib", "loop_lag_p99_ms", "limiter_waiting",
           # the LLM calls the app made, all providers and models, and its own overhead on the requests that did
           "upstream_calls_per_s", "upstream_attempts_per_s", "upstream_errors_per_s", "upstream_p50_ms",
           "upstream_p95_ms", "upstream_first_chunk_p50_ms", "upstream_first_chunk_p95_ms",
           "upstream_input_tokens_per_s", "upstream_output_tokens_per_s", "overhead_p50_ms", "overhead_p95_ms",
           "first_token_overhead_p95_ms")


# The MCP table: counts over the interval, not rates (few operations per interval are common); errors and buckets as
# space-separated name=count pairs (error.type values hold no space; buckets cumulative, by upper bound, "+Inf" last).
MCP_COLUMNS = ("time", "seconds", "side", "server", "method", "tool", "prompt", "operations", "failed", "tool_errors",
               "errors", "p50_ms", "p95_ms", "buckets")


def mcp_path(csv_path: str) -> str:
    """Where the MCP table of a recording goes: ``load.csv`` -> ``load.mcp.csv``."""
    path = Path(csv_path)
    return str(path.with_suffix(".mcp.csv") if path.suffix == ".csv" else path.with_name(path.name + ".mcp.csv"))


def mcp_rows(interval: Interval) -> list[dict[str, str]]:
    """One row per side, server, method and tool or prompt with operations in the interval (idle ones are left out:
    the rest of their interval is in the main CSV's row)."""
    out = []
    for side, found in interval.mcp.items():
        for o in found.operations:
            if o.operations:
                out.append(_mcp_row(interval, side, o))
    return out


def _mcp_row(interval: Interval, side: str, o: McpOperations) -> dict[str, str]:
    return {"time": f"{interval.time:.3f}", "seconds": _number(interval.seconds, 3), "side": side,
            "server": o.server, "method": o.method, "tool": o.tool, "prompt": o.prompt,
            "operations": _number(o.operations, 0), "failed": _number(o.failed, 0),
            "tool_errors": _number(o.tool_errors, 0),
            "errors": " ".join(f"{kind}={count:.0f}" for kind, count in o.errors.items() if count),
            "p50_ms": _ms(o.duration, 0.5), "p95_ms": _ms(o.duration, 0.95),
            "buckets": " ".join(f"{'+Inf' if math.isinf(bound) else f'{bound:g}'}={count:.0f}"
                                for bound, count in sorted(o.duration.buckets.items()))}


def row(interval: Interval) -> dict[str, Any]:
    routes = interval.all_routes
    latency = routes.latency if routes else HistogramData()
    ttft, tpot = HistogramData(), HistogramData()
    inputs = outputs = None
    for model in interval.models:
        ttft.add(model.time_to_first_token)
        tpot.add(model.time_per_output_token)
        if model.input_tokens_per_s is not None:
            inputs = (inputs or 0.0) + model.input_tokens_per_s
        if model.output_tokens_per_s is not None:
            outputs = (outputs or 0.0) + model.output_tokens_per_s
    return {
        "time": f"{interval.time:.3f}", "seconds": _number(interval.seconds, 3),
        "requests_per_s": _number(routes.requests_per_s if routes else 0.0, 3),
        "errors_per_s": _number(routes.errors_per_s if routes else 0.0, 3),
        "latency_p50_ms": _ms(latency, 0.5), "latency_p95_ms": _ms(latency, 0.95), "latency_p99_ms": _ms(latency, 0.99),
        "in_flight": _number(interval.in_flight, 0), "peak": _number(interval.peak, 0),
        "first_byte_p50_ms": _ms(interval.time_to_first_byte, 0.5),
        "first_byte_p95_ms": _ms(interval.time_to_first_byte, 0.95),
        "ttft_p50_ms": _ms(ttft, 0.5), "ttft_p95_ms": _ms(ttft, 0.95),
        "time_per_output_token_mean_ms": _number(tpot.mean * 1000 if tpot.count else None, 2),
        "input_tokens_per_s": _number(inputs, 2), "output_tokens_per_s": _number(outputs, 2),
        "cpu_percent": _number(None if interval.cpu_cores is None else interval.cpu_cores * 100, 1),
        "rss_mib": _number(None if interval.rss_bytes is None else interval.rss_bytes / 2**20, 1),
        "loop_lag_p99_ms": _ms(interval.loop_lag, 0.99),
        "limiter_waiting": _number(sum(waiting for _, waiting, _ in interval.limiters), 0),
        **_upstream(interval),
    }


def _upstream(interval: Interval) -> dict[str, str]:
    """The upstream columns: blank where nothing was reported (no upstream calls, no attempts counted)."""
    calls = interval.upstream
    duration, first_chunk = HistogramData(), HistogramData()
    for u in calls:
        duration.add(u.duration)
        first_chunk.add(u.first_chunk)

    def per_s(counts: list[float | None]) -> str:
        known = [n for n in counts if n is not None]
        return _number(interval.per_s(sum(known)) if known else None, 3)

    routes = interval.all_routes
    overhead = routes.overhead if routes and routes.overhead else HistogramData()
    first_token = routes.first_token_overhead if routes and routes.first_token_overhead else HistogramData()
    return {
        "upstream_calls_per_s": per_s([u.calls for u in calls]),
        "upstream_attempts_per_s": per_s([u.attempts for u in calls]),
        "upstream_errors_per_s": per_s([sum(u.errors.values()) if u.attempts is not None else None for u in calls]),
        "upstream_p50_ms": _ms(duration, 0.5), "upstream_p95_ms": _ms(duration, 0.95),
        "upstream_first_chunk_p50_ms": _ms(first_chunk, 0.5), "upstream_first_chunk_p95_ms": _ms(first_chunk, 0.95),
        "upstream_input_tokens_per_s": per_s([u.input_tokens for u in calls]),
        "upstream_output_tokens_per_s": per_s([u.output_tokens for u in calls]),
        "overhead_p50_ms": _ms(overhead, 0.5), "overhead_p95_ms": _ms(overhead, 0.95),
        "first_token_overhead_p95_ms": _ms(first_token, 0.95),
    }


def _ms(data: HistogramData, q: float) -> str:
    return _number(data.quantile(q) * 1000 if data.count else None, 2)


def _number(value: float | None, digits: int) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def record(urls: list[str], path: str, every: float, duration: float | None) -> int:
    """Write rows to ``path`` until ``duration`` seconds have passed (None: until Ctrl-C); MCP rows, if the app
    reports MCP operations, to ``mcp_path(path)``."""
    started = time.monotonic()
    rows = 0
    mcp = _McpTable(mcp_path(path))
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        file.flush()
        previous: Reading | None = None
        next_at = started
        try:
            while duration is None or time.monotonic() - started < duration + every / 2:
                try:
                    current = Reading.of(read_all(urls))
                except OSError as exc:
                    print(f"otel-llm-metrics record: {exc}; retrying", file=sys.stderr, flush=True)
                    current = None
                if previous is None and current is not None:
                    print(f"otel-llm-metrics record: first reading taken; a row every {every:g}s in {path}",
                          file=sys.stderr, flush=True)
                if previous is not None and current is not None:
                    interval = between(previous, current)
                    writer.writerow(row(interval))
                    file.flush()
                    os.fsync(file.fileno())
                    rows += 1
                    mcp.write(mcp_rows(interval))
                previous = current
                next_at += every
                time.sleep(max(0.0, next_at - time.monotonic()))
        except KeyboardInterrupt:
            pass
        finally:
            mcp.close()
    print(f"otel-llm-metrics record: {rows} rows in {path}"
          + (f", {mcp.rows} MCP rows in {mcp.path}" if mcp.rows else ""), file=sys.stderr, flush=True)
    return 0


class _McpTable:
    """``FILE.mcp.csv``, opened at its first row (an app without MCP gets none). One left by an earlier recording
    under the same name goes at the start, as the main CSV is overwritten: ``report`` would read it as this one's."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0
        self.file: Any = None
        self.writer: csv.DictWriter | None = None
        if os.path.exists(path):
            os.remove(path)

    def write(self, rows: list[dict[str, str]]) -> None:
        if not rows:
            return
        if self.writer is None:
            self.file = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self.writer = csv.DictWriter(self.file, fieldnames=MCP_COLUMNS)
            self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.rows += len(rows)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
