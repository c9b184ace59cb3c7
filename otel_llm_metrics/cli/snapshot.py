"""``snapshot --json``: one machine-readable snapshot, schema ``otel-llm-metrics.snapshot/1`` (docs/cli.md)."""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence

from .. import catalogue as c
from .readings import HistogramData, L, by_route, label, merged, models, parse

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
    totals = {"requests": sum(d.count for d in routes.values()), "errors": sum(errors.values()),
              "input_tokens": sum(m["input"].total for m in found),
              "output_tokens": sum(m["output"].total for m in found)}
    outcomes: dict[str, float] = defaultdict(float)
    for key, value in samples.get(c.STREAMS.prometheus_name, {}).items():
        outcomes[label(key, L[c.STREAM_OUTCOME])] += value
    rates = None
    if previous and previous.get("schema") == SNAPSHOT_SCHEMA and now > previous.get("time", now):
        elapsed = now - previous["time"]
        rates = {f"{name}_per_s": max(0.0, value - previous["totals"].get(name, 0.0)) / elapsed
                 for name, value in totals.items()}
    return {
        "schema": SNAPSHOT_SCHEMA, "time": now, "totals": totals, "rates": rates,
        "in_flight": sum(samples.get(c.ACTIVE_REQUESTS.prometheus_name, {}).values()),
        "peak": max(samples.get(c.ACTIVE_REQUESTS_PEAK.prometheus_name, {}).values(), default=0.0),
        "routes": [{"method": method, "route": route, "requests": data.count, "errors": errors[(method, route)],
                    "duration_s": _percentiles(data)} for (method, route), data in sorted(routes.items())],
        "streams": {"outcomes": dict(sorted(outcomes.items())), "time_to_first_byte_s": _percentiles(
            merged(histograms.get(c.STREAM_TIME_TO_FIRST_BYTE.prometheus_name, {})))},
        "models": [{"operation": m["operation"], "model": m["model"], "requests": m["requests"],
                    "input_tokens": m["input"].total if m["input"].count else None,
                    "output_tokens": m["output"].total if m["output"].count else None,
                    "estimated_output_tokens": m["estimated"], "time_to_first_token_s": _percentiles(m["ttft"]),
                    "time_per_output_token_s": _percentiles(m["tpot"])} for m in found],
    }


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


