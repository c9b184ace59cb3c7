"""What happened between two readings: rates, and percentiles from bucket deltas (not since start).

``watch`` draws one ``Interval`` per screen and ``record`` writes one per CSV row. Counters that went
down (a restarted process behind a URL) count from zero, as Prometheus's ``rate()`` does.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .. import catalogue as c
from .cost import COUNTERS as COST_COUNTERS
from .cost import SideCost, costs
from .mcp import GAUGES as MCP_GAUGES
from .mcp import HISTOGRAMS as MCP_HISTOGRAMS
from .mcp import McpSide, mcp_sides
from .readings import HistogramData, L, Reading, by_route, label, merged, route_of
from .upstream import COUNTERS, GAUGES, HISTOGRAMS, OVERHEADS, UpstreamCalls, overheads, upstream_calls


@dataclass
class RouteRow:
    method: str
    route: str
    requests_per_s: float | None
    errors_per_s: float | None
    latency: HistogramData  # observed in the interval
    in_flight: float = 0.0
    peak: float = 0.0
    overhead: HistogramData | None = None  # None: the route made no upstream calls (that anyone measured)
    first_token_overhead: HistogramData | None = None


@dataclass
class ModelRow:
    operation: str
    model: str
    requests_per_s: float | None
    input_tokens_per_s: float | None  # None: nobody reported input tokens
    output_tokens_per_s: float | None
    time_to_first_token: HistogramData
    time_per_output_token: HistogramData


@dataclass
class Interval:
    time: float
    seconds: float | None  # None for the first reading: totals since start, no rates
    routes: list[RouteRow] = field(default_factory=list)
    all_routes: RouteRow | None = None
    in_flight: float = 0.0
    peak: float = 0.0
    time_to_first_byte: HistogramData = field(default_factory=HistogramData)
    stream_outcomes_per_s: dict[str, float] = field(default_factory=dict)
    models: list[ModelRow] = field(default_factory=list)
    limiters: list[tuple[str, float, HistogramData]] = field(default_factory=list)  # name, waiting, wait time
    cpu_cores: float | None = None  # CPU seconds per second, all workers
    rss_bytes: float | None = None
    loop_lag: HistogramData = field(default_factory=HistogramData)
    pools: list[tuple[str, float, float, float]] = field(default_factory=list)  # name, used, idle, max
    caches: list[tuple[str, float | None, float | None]] = field(default_factory=list)  # name, lookups/s, hit ratio
    upstream: list[UpstreamCalls] = field(default_factory=list)  # counts over the interval: see per_s()
    cost: dict[str, SideCost] = field(default_factory=dict)  # "made", "served": USD over the interval
    mcp: dict[str, McpSide] = field(default_factory=dict)  # "served", "called": MCP operations over the interval

    def per_s(self, count: float | None) -> float | None:
        """A count over this interval per second; None for the first reading or what was not reported."""
        return count / self.seconds if count is not None and self.seconds else None


def between(earlier: Reading | None, later: Reading) -> Interval:
    seconds = later.time - earlier.time if earlier is not None and later.time > earlier.time else None
    before = earlier or Reading(later.time, {}, {})

    out = Interval(later.time, seconds)
    rate = out.per_s

    def hist(spec: c.InstrumentSpec) -> dict[tuple, HistogramData]:
        old = before.histogram(spec)
        return {key: data.minus(old[key]) if key in old else data for key, data in later.histogram(spec).items()}

    def increase(spec: c.InstrumentSpec | str) -> dict[tuple, float]:
        name = spec if isinstance(spec, str) else spec.prometheus_name
        old = before.samples.get(name, {})
        return {key: value - old.get(key, 0.0) if value >= old.get(key, 0.0) else value
                for key, value in later.samples.get(name, {}).items()}

    durations, errors = by_route({c.REQUEST_DURATION.prometheus_name: hist(c.REQUEST_DURATION)})
    in_flight = _by_route_sum(later.sample(c.ROUTE_ACTIVE_REQUESTS))
    peaks = _by_route_max(later.sample(c.ROUTE_ACTIVE_REQUESTS_PEAK))
    overhead, first_token = overheads({spec.prometheus_name: hist(spec) for spec in OVERHEADS})
    total = HistogramData()
    for (method, route), data in sorted(durations.items()):
        out.routes.append(RouteRow(method, route, rate(data.count), rate(errors[(method, route)]), data,
                                   in_flight.get((method, route), 0.0), peaks.get((method, route), 0.0),
                                   overhead.get((method, route)), first_token.get((method, route))))
        total.add(data)
    out.all_routes = RouteRow("", "all", rate(total.count), rate(sum(errors.values())), total,
                              overhead=merged(overhead) if overhead else None,
                              first_token_overhead=merged(first_token) if first_token else None)
    out.upstream = upstream_calls({spec.prometheus_name: hist(spec) for spec in HISTOGRAMS},
                                  {**{spec.prometheus_name: increase(spec) for spec in COUNTERS},
                                   **{spec.prometheus_name: later.sample(spec) for spec in GAUGES}})
    out.cost = costs({name: increase(name) for name in COST_COUNTERS})
    out.mcp = mcp_sides({spec.prometheus_name: hist(spec) for spec in MCP_HISTOGRAMS},
                        {spec.prometheus_name: later.sample(spec) for spec in MCP_GAUGES
                         if spec.prometheus_name in later.samples})
    out.in_flight = sum(later.sample(c.ACTIVE_REQUESTS).values())
    out.peak = max(later.sample(c.ACTIVE_REQUESTS_PEAK).values(), default=0.0)

    out.time_to_first_byte = merged(hist(c.STREAM_TIME_TO_FIRST_BYTE))
    outcomes: dict[str, float] = defaultdict(float)
    for key, value in increase(c.STREAMS).items():
        outcomes[label(key, L[c.STREAM_OUTCOME])] += value
    out.stream_outcomes_per_s = {k: v / seconds if seconds else v for k, v in sorted(outcomes.items())}

    durations_by_model, tokens = hist(c.GEN_AI_SERVER_DURATION), hist(c.GEN_AI_SERVER_TOKENS)
    ttft, tpot = hist(c.GEN_AI_SERVER_TTFT), hist(c.GEN_AI_SERVER_TPOT)
    for operation, model in sorted({_model(k) for k in durations_by_model}):
        of_model = {L[c.GEN_AI_OPERATION]: operation, L[c.GEN_AI_REQUEST_MODEL]: None if model == "-" else model}
        input_tokens = merged(tokens, **of_model, **{L[c.GEN_AI_TOKEN_TYPE]: "input"})
        output_tokens = merged(tokens, **of_model, **{L[c.GEN_AI_TOKEN_TYPE]: "output"})
        out.models.append(ModelRow(
            operation, model, rate(merged(durations_by_model, **of_model).count),
            rate(input_tokens.total) if input_tokens.count else None,
            rate(output_tokens.total) if output_tokens.count else None,
            merged(ttft, **of_model), merged(tpot, **of_model)))

    waiting = later.sample(c.LIMITER_WAITING)
    waits = hist(c.LIMITER_WAIT_TIME)
    for key, value in sorted(waiting.items()):
        out.limiters.append((label(key, L[c.LIMITER_NAME]), value, waits.get(key, HistogramData())))

    cpu = increase(c.PROCESS_CPU_TIME)
    if cpu and seconds:
        out.cpu_cores = sum(cpu.values()) / seconds
    rss = later.sample(c.PROCESS_MEMORY_USAGE)
    out.rss_bytes = sum(rss.values()) if rss else None
    out.loop_lag = merged(hist(c.LOOP_LAG))

    counts, maxima = later.sample(c.POOL_COUNT), later.sample(c.POOL_MAX)
    for pool in sorted({label(k, L[c.POOL_NAME]) for k in counts}):
        state = defaultdict(float)
        for key, value in counts.items():
            if label(key, L[c.POOL_NAME]) == pool:
                state[label(key, L[c.POOL_STATE])] += value
        maximum = sum(v for k, v in maxima.items() if label(k, L[c.POOL_NAME]) == pool)
        out.pools.append((pool, state["used"], state["idle"], maximum))
    hits, misses = increase(c.CACHE_HITS), increase(c.CACHE_MISSES)
    for key in sorted(set(hits) | set(misses)):
        hit, miss = hits.get(key, 0.0), misses.get(key, 0.0)
        out.caches.append((label(key, L[c.CACHE_NAME]), rate(hit + miss), hit / (hit + miss) if hit + miss else None))
    return out


def _model(key: tuple) -> tuple[str, str]:
    return label(key, L[c.GEN_AI_OPERATION]), label(key, L[c.GEN_AI_REQUEST_MODEL])


def _by_route_sum(samples: dict[tuple, float]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = defaultdict(float)
    for key, value in samples.items():
        out[route_of(key)] += value
    return out


def _by_route_max(samples: dict[tuple, float]) -> dict[tuple[str, str], float]:
    """Peaks are per worker: the busiest worker's, per route."""
    out: dict[tuple[str, str], float] = {}
    for key, value in samples.items():
        route = route_of(key)
        out[route] = max(out.get(route, 0.0), value)
    return out
