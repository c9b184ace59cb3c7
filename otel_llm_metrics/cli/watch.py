"""``watch``: a live terminal dashboard, one screen per interval, drawn with rich.

Rates and percentiles cover the last interval (bucket deltas), not the time since start. An endpoint
that does not answer is retried and the screen says so; Ctrl-C exits cleanly.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .interval import Interval, between
from .readings import HistogramData, Reading, ms, read_all


def _rich() -> Any:
    try:
        import rich  # noqa: F401
    except ImportError:
        raise SystemExit("otel-llm-metrics watch needs rich: pip install 'otel-llm-metrics[cli]'") from None
    from rich import box
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    return box, Console, Group, Live, Table, Text


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pair(data: HistogramData) -> tuple[str, str]:
    return data.describe(0.5), data.describe(0.95)


def screen(interval: Interval, urls: list[str], status: str) -> Any:
    box, _, Group, _, Table, Text = _rich()
    span = f"last {interval.seconds:.1f} s" if interval.seconds else "since start (rates from the next screen)"
    parts: list[Any] = [Text(f"{time.strftime('%H:%M:%S', time.localtime(interval.time))}  {' '.join(urls)}  "
                             f"[{span}]  {status}")]

    def table(title: str, *columns: str) -> Any:
        made = Table(title=title, box=box.SIMPLE, title_justify="left", pad_edge=False)
        for i, column in enumerate(columns):
            made.add_column(column, justify="left" if i < 2 else "right", no_wrap=i >= 2, overflow="fold")
        return made

    routes = table(f"Requests (in flight {interval.in_flight:.0f}, busiest worker's peak {interval.peak:.0f})",
                   "method", "route", "req/s", "err/s", "p50", "p95", "mean", "in flight", "peak")
    for row in interval.routes:
        routes.add_row(row.method, row.route, _rate(row.requests_per_s), _rate(row.errors_per_s),
                       *_pair(row.latency), ms(row.latency.mean), f"{row.in_flight:.0f}", f"{row.peak:.0f}")
    parts.append(routes)
    if interval.stream_outcomes_per_s or interval.time_to_first_byte.count:
        per = "/s" if interval.seconds else ""  # the first screen has totals since start
        outcomes = interval.stream_outcomes_per_s
        streams = table("Streams", "first byte p50", "p95", *[f"{k}{per}" for k in outcomes])
        streams.add_row(*_pair(interval.time_to_first_byte), *[f"{v:.1f}" for v in outcomes.values()])
        parts.append(streams)
    if interval.models:
        models = table("Models", "operation", "model", "req/s", "in tok/s", "out tok/s", "ttft p50", "ttft p95",
                       "per token p50", "per token mean")
        for m in interval.models:
            models.add_row(m.operation, m.model, _rate(m.requests_per_s), _rate(m.input_tokens_per_s),
                           _rate(m.output_tokens_per_s), *_pair(m.time_to_first_token),
                           m.time_per_output_token.describe(0.5), ms(m.time_per_output_token.mean))
        parts.append(models)
    for name, waiting, wait in interval.limiters:
        parts.append(Text(f"Limiter {name}: {waiting:.0f} waiting, wait p95 {wait.describe(0.95)} "
                          f"(mean {ms(wait.mean)})"))
    cpu = "-" if interval.cpu_cores is None else f"{interval.cpu_cores * 100:.0f}% of a core"
    rss = "-" if interval.rss_bytes is None else f"{interval.rss_bytes / 2**20:.0f} MiB"
    parts.append(Text(f"Process: CPU {cpu}, resident {rss}, event-loop lag p99 {interval.loop_lag.describe(0.99)}"))
    for name, used, idle, maximum in interval.pools:
        parts.append(Text(f"Pool {name}: used {used:.0f}, idle {idle:.0f}, max {maximum:.0f}"))
    for name, lookups, ratio in interval.caches:
        parts.append(Text(f"Cache {name}: {_rate(lookups)} lookups/s, hit ratio "
                          + ("-" if ratio is None else f"{ratio:.0%}")))
    return Group(*parts)


def watch(urls: list[str], every: float, count: int = 0) -> int:
    _, Console, Group, Live, _, Text = _rich()
    console = Console() if sys.stdout.isatty() else Console(width=160)  # piped: no terminal to fit, keep whole lines
    previous: Reading | None = None
    shown = 0
    with Live(Text("reading..."), console=console, auto_refresh=False) as live:
        while True:
            try:
                current = Reading.of(read_all(urls))
                live.update(screen(between(previous, current), urls, f"every {every:g}s, Ctrl-C to stop"),
                            refresh=True)
                previous = current
            except OSError as exc:
                live.update(Text(f"{time.strftime('%H:%M:%S')}  {exc}; retrying every {every:g}s "
                                 "(Ctrl-C to stop)"), refresh=True)
                previous = None  # the endpoint may come back as a new process: start over
            shown += 1
            if count and shown >= count:
                return 0
            time.sleep(every)
