"""``snapshot --json``: one machine-readable snapshot, schema ``otel-llm-metrics.snapshot/1`` (docs/cli.md)."""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence

from .. import catalogue as c
from .cost import JSON_KEYS, SIDES, ModelCost, costs
from .mcp import CALLED, SERVED, McpOperations, McpSide, mcp_sides
from .mcp import SIDES as MCP_SIDES
from .readings import HistogramData, L, by_route, label, merged, models, parse
from .upstream import UpstreamCalls, overheads, upstream_calls

SNAPSHOT_SCHEMA = "otel-llm-metrics.snapshot/1"


def _percentiles(data: HistogramData) -> dict:
    """p50/p95/p99 in seconds, each with its bucket: value is null where the bucket is too wide to say."""
    out: dict = {"count": data.count, "mean": None if math.isnan(data.mean) else data.mean}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        low, high = data.bucket(q)
        out[name] = {"value": data.estimate(q), "bucket": [low, None if high is None or math.isinf(high) else high]}
    return out


def snapshot(texts: str | Sequence[str], previous: dict | None = None, now: float | None = None) -> dict:
    """One machine-readable snapshot (schema ``otel-llm-metrics.snapshot/1``, documented in docs/cli.md).

    ``previous``: an earlier snapshot; its totals give the rates since then.
    """
    now = time.time() if now is None else now
    samples, histograms = parse(texts)
    routes, errors = by_route(histograms)
    found = models(histograms)
    calls = upstream_calls(histograms, samples)
    overhead, first_token = overheads(histograms)
    mcp = mcp_sides(histograms, samples)
    totals = {"requests": sum(d.count for d in routes.values()), "errors": sum(errors.values()),
              "input_tokens": sum(m["input"].total for m in found),
              "output_tokens": sum(m["output"].total for m in found),
              "upstream_calls": sum(u.calls for u in calls), "upstream_attempts": sum(u.attempts or 0 for u in calls),
              "upstream_errors": sum(sum(u.errors.values()) for u in calls),
              "upstream_input_tokens": sum(u.input_tokens or 0 for u in calls),
              "upstream_output_tokens": sum(u.output_tokens or 0 for u in calls),
              **_mcp_totals(mcp)}
    outcomes: dict[str, float] = defaultdict(float)
    for key, value in samples.get(c.STREAMS.prometheus_name, {}).items():
        outcomes[label(key, L[c.STREAM_OUTCOME])] += value
    rates, elapsed = None, None
    if previous and previous.get("schema") == SNAPSHOT_SCHEMA and now > previous.get("time", now):
        elapsed = now - previous["time"]
        rates = _rates(totals, previous["totals"], elapsed)
    earlier = {(u["provider"] or "", u["model"] or ""): u for u in (previous or {}).get("upstream_calls", [])}
    return {
        "schema": SNAPSHOT_SCHEMA, "time": now, "totals": totals, "rates": rates,
        "in_flight": sum(samples.get(c.ACTIVE_REQUESTS.prometheus_name, {}).values()),
        "peak": max(samples.get(c.ACTIVE_REQUESTS_PEAK.prometheus_name, {}).values(), default=0.0),
        "routes": [{"method": method, "route": route, "requests": data.count, "errors": errors[(method, route)],
                    "duration_s": _percentiles(data),
                    "upstream_overhead_s": _maybe(overhead.get((method, route))),
                    "first_token_overhead_s": _maybe(first_token.get((method, route)))}
                   for (method, route), data in sorted(routes.items())],
        "streams": {"outcomes": dict(sorted(outcomes.items())), "time_to_first_byte_s": _percentiles(
            merged(histograms.get(c.STREAM_TIME_TO_FIRST_BYTE.prometheus_name, {})))},
        "models": [{"operation": m["operation"], "model": m["model"], "requests": m["requests"],
                    "input_tokens": m["input"].total if m["input"].count else None,
                    "output_tokens": m["output"].total if m["output"].count else None,
                    "estimated_output_tokens": m["estimated"], "time_to_first_token_s": _percentiles(m["ttft"]),
                    "time_per_output_token_s": _percentiles(m["tpot"])} for m in found],
        "upstream_calls": [_upstream(u, earlier, elapsed if previous and "upstream_calls" in previous else None)
                           for u in calls],
        "cost": _cost(samples, previous.get("cost") if previous else None,
                      elapsed if previous and "cost" in previous else None),
        "mcp": {side: _mcp(mcp.get(side), ((previous or {}).get("mcp") or {}).get(side),
                           elapsed if previous and "mcp" in previous else None) for side in MCP_SIDES},
    }


def _maybe(data: HistogramData | None) -> dict | None:
    return None if data is None else _percentiles(data)


def _rates(now: dict, before: dict, elapsed: float) -> dict:
    """Per second since ``before``; null for what ``before`` did not count (a state file of an older version)."""
    return {f"{name}_per_s": None if name not in before else max(0.0, value - before[name]) / elapsed
            for name, value in now.items()}


def _upstream(calls: UpstreamCalls, earlier: dict[tuple, dict], elapsed: float | None) -> dict:
    """One provider and model; ``rates`` since the earlier snapshot (which had none of its calls if absent)."""
    out = {"provider": calls.provider or None, "model": calls.model or None, "calls": calls.calls,
           "failed_calls": calls.failed, "attempts": calls.attempts, "retries": calls.retries, "errors": calls.errors,
           "input_tokens": calls.input_tokens, "output_tokens": calls.output_tokens,
           "duration_s": _percentiles(calls.duration), "time_to_first_chunk_s": _percentiles(calls.first_chunk),
           "rate_limits": {name: {"remaining": left, "limit": limit}
                           for name, (left, limit) in calls.rate_limits.items()}, "rates": None}
    if elapsed:
        before = earlier.get((calls.provider, calls.model), {})
        rates: dict = {f"{n}_per_s": None if out[n] is None else max(0.0, out[n] - (before.get(n) or 0.0)) / elapsed
                       for n in ("calls", "failed_calls", "attempts", "input_tokens", "output_tokens")}
        rates["errors_per_s"] = {kind: max(0.0, n - before.get("errors", {}).get(kind, 0.0)) / elapsed
                                 for kind, n in calls.errors.items()}
        out["rates"] = rates
    return out


def _mcp_totals(found: dict[str, McpSide]) -> dict[str, float]:
    """MCP operations and failed ones since start, per side (0 for a side that reported none)."""
    out = {}
    for side in (SERVED, CALLED):
        mine = found.get(side)
        out[f"mcp_{side}_operations"] = mine.total if mine else 0.0
        out[f"mcp_{side}_failed"] = mine.failed if mine else 0.0
    return out


def _mcp(found: McpSide | None, earlier: dict | None, elapsed: float | None) -> dict | None:
    """One side's MCP operations and sessions (null: nothing reported); ``rates`` since the earlier snapshot."""
    if found is None:
        return None
    before = {(o["server"] or "", o["method"] or "", o["tool"] or "", o["prompt"] or ""): o
              for o in (earlier or {}).get("operations", [])}
    return {"operations": [_mcp_operation(o, before.get(o.key, {}), elapsed) for o in found.operations],
            "open_sessions": found.open_sessions, "sessions_ended": found.sessions.count,
            "session_duration_s": _percentiles(found.sessions)}


def _mcp_operation(o: McpOperations, before: dict, elapsed: float | None) -> dict:
    out = {"server": o.server or None, "method": o.method or None, "tool": o.tool or None, "prompt": o.prompt or None,
           "operations": o.operations, "failed": o.failed, "tool_errors": o.tool_errors, "errors": o.errors,
           "duration_s": _percentiles(o.duration), "rates": None}
    if elapsed:
        rates: dict = {f"{n}_per_s": max(0.0, out[n] - (before.get(n) or 0.0)) / elapsed
                       for n in ("operations", "failed", "tool_errors")}
        rates["errors_per_s"] = {kind: max(0.0, n - before.get("errors", {}).get(kind, 0.0)) / elapsed
                                 for kind, n in o.errors.items()}
        out["rates"] = rates
    return out


def _cost(samples: dict, earlier: dict | None, elapsed: float | None) -> dict:
    """USD per provider and model, per side (null: no cost series); ``rates`` since the earlier snapshot."""
    found, out = costs(samples), {}
    for side in SIDES:
        cost, key = found.get(side), JSON_KEYS[side]
        if cost is None:
            out[key] = None
            continue
        before = (earlier or {}).get(key) or {}
        models = {(m["provider"] or "", m["model"] or ""): m for m in before.get("models", [])}
        out[key] = {"usd": cost.usd, "unpriced_calls": cost.unpriced_calls,
                    "rates": _cost_rates(cost.usd, cost.unpriced_calls, before, elapsed),
                    "models": [_model_cost(m, models.get((m.provider, m.model), {}), elapsed) for m in cost.models]}
    return out


def _model_cost(m: ModelCost, before: dict, elapsed: float | None) -> dict:
    return {"provider": m.provider or None, "model": m.model or None, "usd": m.usd,
            "unpriced_calls": m.unpriced_calls, "unpriced_tokens": m.unpriced_tokens,
            "rates": _cost_rates(m.usd, m.unpriced_calls, before, elapsed)}


def _cost_rates(usd: float | None, unpriced: float, before: dict, elapsed: float | None) -> dict | None:
    """USD per hour (null: no price) and unpriced calls per second since ``before`` (absent: nothing then)."""
    if not elapsed:
        return None
    return {"usd_per_hour": None if usd is None else max(0.0, usd - (before.get("usd") or 0.0)) / elapsed * 3600,
            "unpriced_calls_per_s": max(0.0, unpriced - (before.get("unpriced_calls") or 0.0)) / elapsed}


def snapshot_with_state(texts: list[str], state: str | None) -> dict:
    previous = None
    if state and os.path.exists(state):
        try:
            with open(state, encoding="utf-8") as file:
                previous = json.load(file)
        except (OSError, ValueError):
            previous = None  # unreadable: no rates this time, a fresh state below
    current = snapshot(texts, previous)
    if state:
        with open(state, "w", encoding="utf-8") as file:
            json.dump(current, file)
    return current


