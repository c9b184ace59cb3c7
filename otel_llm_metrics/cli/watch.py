"""``watch``: a live terminal dashboard, one screen per interval, drawn with rich.

Rates and percentiles cover the last interval (bucket deltas), not the time since start. An endpoint
that does not answer is retried and the screen says so; Ctrl-C exits cleanly.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .cost import NO_PRICE, TITLES, ModelCost, calls, usd
from .interval import Interval, between
from .mcp import CALLED, McpOperations, named
from .mcp import TITLES as MCP_TITLES
from .readings import HistogramData, Reading, ms, read_all
from .upstream import UpstreamCalls


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

    def table(title: str, *columns: str, left: int = 2) -> Any:
        made = Table(title=title, box=box.SIMPLE, title_justify="left", pad_edge=False)
        for i, column in enumerate(columns):
            made.add_column(column, justify="left" if i < left else "right", no_wrap=i >= left, overflow="fold")
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
    parts.extend(_mcp(interval, table))
    parts.extend(_upstream(interval, table, Text))
    parts.extend(_cost(interval, table))
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


def _upstream(interval: Interval, table: Any, text: Any) -> list[Any]:
    """The calls the app made, their rate limits, and the app's own overhead per route: only what was reported."""
    parts: list[Any] = []
    if interval.upstream:
        calls = table("Upstream LLM calls this app made", "provider", "model", "calls/s", "attempts/s", "failed/s",
                      "errors/s by type", "p50", "p95", "1st chunk p50", "p95", "in tok/s", "out tok/s")
        for u in interval.upstream:
            calls.add_row(*upstream_row(interval, u))
        parts.append(calls)
    for u in interval.upstream:
        if u.rate_limits:
            parts.append(text(f"Rate limits left {u.provider or '-'} {u.model or '-'}: " + ", ".join(
                f"{name} {_amount(left)}/{_amount(limit)}" for name, (left, limit) in u.rate_limits.items())))
    routes = [r for r in interval.routes if r.overhead is not None or r.first_token_overhead is not None]
    if routes:
        own = table("App overhead (served time minus time waiting on upstream calls)", "method", "route",
                    "p50", "p95", "mean", "first token overhead p50", "p95")
        for r in routes:
            overhead = r.overhead or HistogramData()
            own.add_row(r.method, r.route, *_pair(overhead), ms(overhead.mean),
                        *_pair(r.first_token_overhead or HistogramData()))
        parts.append(own)
    return parts


def _mcp(interval: Interval, table: Any) -> list[Any]:
    """Per side that reported MCP (served, called): operations per method and tool, then its sessions."""
    parts = []
    for side, found in interval.mcp.items():
        server = ("server",) if side == CALLED else ()
        view = table(MCP_TITLES[side], *server, "method", "tool", "ops/s", "failed/s", "tool_error/s",
                     "errors/s by type", "p50", "p95", left=len(server) + 2)
        for o in found.operations:
            view.add_row(*mcp_row(interval, o, side == CALLED))
        ended = interval.per_s(found.sessions.count) if interval.seconds else found.sessions.count
        view.caption = (f"sessions open {'-' if found.open_sessions is None else f'{found.open_sessions:.0f}'}, "
                        f"ended {_rate(ended)}{'/s' if interval.seconds else ''}, "
                        f"duration p50 {found.sessions.describe(0.5)}, p95 {found.sessions.describe(0.95)}")
        view.caption_justify = "left"
        parts.append(view)
    return parts


def mcp_row(interval: Interval, o: McpOperations, called: bool) -> tuple[str, ...]:
    """One method and tool: rates over the interval (none on the first screen)."""
    errors = "-"
    if interval.seconds:
        errors = ", ".join(f"{kind} {_rate(interval.per_s(n))}" for kind, n in o.errors.items()) or "0.0"
    return (*((o.server or "-",) if called else ()), o.method or "-", named(o), _rate(interval.per_s(o.operations)),
            _rate(interval.per_s(o.failed)), _rate(interval.per_s(o.tool_errors)), errors, *_pair(o.duration))


def upstream_row(interval: Interval, u: UpstreamCalls) -> tuple[str, ...]:
    """One provider and model: rates over the interval (none on the first screen), "-" for what is unknown."""
    errors = "-"
    if u.attempts is not None and interval.seconds:
        errors = ", ".join(f"{kind} {_rate(interval.per_s(n))}" for kind, n in u.errors.items()) or "0.0"
    return (u.provider or "-", u.model or "-", _rate(interval.per_s(u.calls)), _rate(interval.per_s(u.attempts)),
            _rate(interval.per_s(u.failed)), errors, *_pair(u.duration), *_pair(u.first_chunk),
            _rate(interval.per_s(u.input_tokens)), _rate(interval.per_s(u.output_tokens)))


def _cost(interval: Interval, table: Any) -> list[Any]:
    """Per side (calls made, responses served) that has cost series: USD per provider and model."""
    parts = []
    for side, cost in interval.cost.items():
        view = table(TITLES[side], "provider", "model", "USD", "USD/h", "unpriced calls")
        if cost.unpriced_calls:
            view.caption, view.caption_justify = f"{calls(cost.unpriced_calls)} unpriced: not in the USD", "left"
        for m in cost.models:
            view.add_row(*cost_row(interval, m))
        if len(cost.models) > 1:
            view.add_row("all", "", *cost_row(interval, ModelCost("", "", cost.usd, cost.unpriced_calls))[2:])
        parts.append(view)
    return parts


def cost_row(interval: Interval, m: ModelCost) -> tuple[str, ...]:
    """USD over the interval (since start on the first screen) and per hour; "no price" where no call of the
    model was priced, which is not $0."""
    if m.usd is None:
        spent = per_hour = NO_PRICE
    else:
        spent, hourly = usd(m.usd), interval.per_s(m.usd)
        per_hour = "-" if hourly is None else usd(hourly * 3600)
    return m.provider or "-", m.model or "-", spent, per_hour, f"{m.unpriced_calls:.0f}"


def _amount(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e3:.0f}k" if value >= 1e4 else f"{value:.0f}"


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
