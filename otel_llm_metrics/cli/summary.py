"""The readable report: key numbers since start, once (``summary``) or as the base of ``watch``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from .. import catalogue as c
from .cost import NO_PRICE, TITLES, ModelCost, calls, costs, usd
from .mcp import CALLED, mcp_sides, named
from .mcp import TITLES as MCP_TITLES
from .readings import HistogramData, L, by_route, label, merged, models, ms, parse


def summary(texts: str | Sequence[str]) -> str:
    """A readable report of the key numbers in one or several Prometheus text expositions."""
    samples, histograms = parse(texts)
    lines = ["Requests by route (count, p50, p95, mean, errors):"]
    routes, errors = by_route(histograms)
    for (method, route), data in sorted(routes.items()):
        lines.append(f"  {method:6} {route:28} {data.count:8.0f}  p50 {data.describe(0.5):>11}  "
                     f"p95 {data.describe(0.95):>11}  mean {ms(data.mean):>8}  errors {errors[(method, route)]:.0f}")
    active = sum(samples.get(c.ACTIVE_REQUESTS.prometheus_name, {}).values())
    peak = max(samples.get(c.ACTIVE_REQUESTS_PEAK.prometheus_name, {}).values(), default=0.0)
    lines.append(f"In flight now: {active:.0f}   peak since start: {peak:.0f}")
    for key, value in sorted(samples.get(c.ROUTE_ACTIVE_REQUESTS_PEAK.prometheus_name, {}).items()):
        lines.append(f"  peak {label(key, L[c.METHOD]):6} {label(key, L[c.ROUTE]):28} {value:.0f}")
    outcomes: dict[str, float] = defaultdict(float)
    for key, value in samples.get(c.STREAMS.prometheus_name, {}).items():
        outcomes[label(key, L[c.STREAM_OUTCOME])] += value
    if outcomes:
        lines.append("Streams: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcomes.items())))
        ttfb = merged(histograms.get(c.STREAM_TIME_TO_FIRST_BYTE.prometheus_name, {}))
        chunks = sum(d.total for d in histograms.get(c.STREAM_CHUNKS.prometheus_name, {}).values())
        sent = sum(d.total for d in histograms.get(c.STREAM_BODY_SIZE.prometheus_name, {}).values())
        lines.append(f"  time to first byte p50 {ttfb.describe(0.5)}, p95 {ttfb.describe(0.95)} "
                     f"(mean {ms(ttfb.mean)}); "
                     f"{chunks:.0f} chunks, {sent / 1024:.1f} KiB sent")
    lines.extend(_llm_lines(histograms))
    lines.extend(mcp_lines(histograms, samples))
    lines.extend(cost_lines(samples))
    lines.extend(_resource_lines(samples, histograms))
    waiting = samples.get(c.LIMITER_WAITING.prometheus_name, {})
    for key, value in sorted(waiting.items()):
        wait = histograms.get(c.LIMITER_WAIT_TIME.prometheus_name, {}).get(key, HistogramData())
        lines.append(f"Limiter {label(key, L[c.LIMITER_NAME])}: waiting now {value:.0f}, "
                     f"wait p95 {wait.describe(0.95)} (mean {ms(wait.mean)}) over {wait.count:.0f} acquisitions")
    return "\n".join(lines)


def _count(data: HistogramData) -> str:
    """A total of something counted; "-" when nothing was reported (unknown is not zero)."""
    return f"{data.total:.0f}" if data.count else "-"


def _llm_lines(histograms: dict) -> list[str]:
    """Tokens, time to first token and time per output token, per model."""
    found = models(histograms)
    if not found:
        return []
    lines = ["LLM requests by model (count, tokens in/out, time to first token p50/p95 and mean, "
             "per output token p50 and mean):"]
    for m in found:
        first, per_token = m["ttft"], m["tpot"]
        lines.append(f"  {m['operation']:15} {m['model'] or '(no model)':20} {m['requests']:5.0f}  "
                     f"in {_count(m['input']):>6}  out {_count(m['output']):>6}"
                     + (f" ({m['estimated']:.0f} estimated)" if m["estimated"] else "")
                     + f"  ttft {first.describe(0.5)}/{first.describe(0.95)} (mean {ms(first.mean)})"
                     + f"  tpot {per_token.describe(0.5)} (mean {ms(per_token.mean)})")
    return lines


def mcp_lines(histograms: dict, samples: dict) -> list[str]:
    """MCP operations since start per side, method and tool (count, failed, tool_error, p50/p95), then sessions."""
    lines = []
    for side, found in mcp_sides(histograms, samples).items():
        lines.append(f"{MCP_TITLES[side]} (count, failed, of which tool_error, p50/p95):")
        for o in found.operations:
            where = f"{o.server or '-'}  " if side == CALLED else ""
            errors = ", ".join(f"{kind}: {n:.0f}" for kind, n in o.errors.items())
            lines.append(f"  {where}{o.method or '-':26} {named(o):20} {o.operations:6.0f}  failed {o.failed:.0f}"
                         f"{f' ({errors})' if errors else ''}  tool_error {o.tool_errors:.0f}  "
                         f"p50/p95 {o.duration.describe(0.5)}/{o.duration.describe(0.95)}")
        open_now = "-" if found.open_sessions is None else f"{found.open_sessions:.0f}"
        lines.append(f"  sessions: open {open_now}, ended {found.sessions.count:.0f}, duration p50 "
                     f"{found.sessions.describe(0.5)}, p95 {found.sessions.describe(0.95)}")
    return lines


def cost_lines(samples: dict) -> list[str]:
    """USD since start per provider and model, for each side that has cost series; "no price" is not $0."""
    lines = []
    for side, cost in costs(samples).items():
        lines.append(f"{TITLES[side]}, USD since start:")
        width = max(len(m.provider or "-") for m in cost.models)
        rows = [(m.provider or "-", m.model or "-", m) for m in cost.models]
        if len(cost.models) > 1:
            rows.append(("all", "", ModelCost("", "", cost.usd, cost.unpriced_calls)))
        for provider, model, m in rows:
            lines.append(f"  {provider:{width}} {model:30} {_spent(m)}")
    return lines


def _spent(m: ModelCost) -> str:
    if m.usd is None:
        return f"{NO_PRICE} ({calls(m.unpriced_calls)})"
    return usd(m.usd) + (f" (+ {calls(m.unpriced_calls)} unpriced, not in it)" if m.unpriced_calls else "")


def _resource_lines(samples: dict, histograms: dict) -> list[str]:
    """Process, event loop, pools and caches, one line each where present."""
    lines = []
    rss = sum(samples.get(c.PROCESS_MEMORY_USAGE.prometheus_name, {}).values())
    if rss:
        cpu = sum(samples.get(c.PROCESS_CPU_TIME.prometheus_name, {}).values())
        threads = sum(samples.get(c.PROCESS_THREADS.prometheus_name, {}).values())
        lag = merged(histograms.get(c.LOOP_LAG.prometheus_name, {}))
        lines.append(f"Process: {cpu:.1f} CPU s, {rss / 2**20:.0f} MiB resident, {threads:.0f} threads; "
                     f"event-loop lag p99 {lag.describe(0.99)}")
    counts = samples.get(c.POOL_COUNT.prometheus_name, {})
    for pool in sorted({label(k, L[c.POOL_NAME]) for k in counts}):
        state = {label(k, L[c.POOL_STATE]): v for k, v in counts.items()
                 if label(k, L[c.POOL_NAME]) == pool}
        maximum = max((v for k, v in samples.get(c.POOL_MAX.prometheus_name, {}).items()
                       if label(k, L[c.POOL_NAME]) == pool), default=0)
        used, idle = state.get('used', 0), state.get('idle', 0)
        lines.append(f"Pool {pool}: used {used:.0f}, idle {idle:.0f}, max {maximum:.0f}")
    hits = samples.get(c.CACHE_HITS.prometheus_name, {})
    for key, hit in sorted(hits.items()):
        miss = samples.get(c.CACHE_MISSES.prometheus_name, {}).get(key, 0.0)
        ratio = f"{hit / (hit + miss):.0%}" if hit + miss else "-"
        lines.append(f"Cache {label(key, L[c.CACHE_NAME])}: {hit:.0f} hits, {miss:.0f} misses, hit ratio {ratio}")
    return lines


