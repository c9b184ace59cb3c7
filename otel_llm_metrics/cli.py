"""``otel-llm-metrics``: read a metrics endpoint and show the numbers that matter, once or live.

    otel-llm-metrics summary http://127.0.0.1:9464/metrics
    otel-llm-metrics watch   http://127.0.0.1:9464/metrics --interval 2
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from . import catalogue as c

# Prometheus label names of the attributes read here, as the OTel exporter writes them.
_L = {attribute: c.prometheus_label(attribute) for attribute in (
    c.METHOD, c.ROUTE, c.STATUS, c.ERROR_TYPE, c.STREAM_OUTCOME, c.GEN_AI_OPERATION, c.GEN_AI_REQUEST_MODEL,
    c.GEN_AI_TOKEN_TYPE, c.GEN_AI_ESTIMATED, c.POOL_NAME, c.POOL_STATE, c.CACHE_NAME, c.LIMITER_NAME)}
DEFAULT_URL = "http://127.0.0.1:9464/metrics"


@dataclass
class HistogramData:
    buckets: dict[float, float] = field(default_factory=dict)  # cumulative, le -> count
    count: float = 0.0
    total: float = 0.0

    def quantile(self, q: float) -> float:
        """Prometheus-style histogram_quantile: linear inside the bucket."""
        if not self.count:
            return math.nan
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for bound in sorted(self.buckets):
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0.0
                return lower_bound + (bound - lower_bound) * share
            lower_bound, lower_count = bound, count
        return lower_bound


def read_metrics(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a URL the user gave
        return response.read().decode()


def parse(text: str) -> tuple[dict, dict]:
    """(samples by name -> {labels tuple: value}, histograms by name -> {labels tuple: HistogramData})."""
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    histograms: dict[str, dict[tuple, HistogramData]] = defaultdict(lambda: defaultdict(HistogramData))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_scope_")}
            if family.type == "histogram":
                le = labels.pop("le", None)
                key = tuple(sorted(labels.items()))
                data = histograms[family.name][key]
                if sample.name.endswith("_bucket") and le is not None:
                    data.buckets[float(le)] = sample.value
                elif sample.name.endswith("_count"):
                    data.count = sample.value
                elif sample.name.endswith("_sum"):
                    data.total = sample.value
            else:
                samples[sample.name][tuple(sorted(labels.items()))] = sample.value
    return samples, histograms


def _label(key: tuple, name: str, default: str = "-") -> str:
    """A label's value; the exporter writes an attribute a point lacks as "" when others have it."""
    return dict(key).get(name) or default


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def summary(text: str) -> str:
    """A readable report of the key numbers in a Prometheus text exposition."""
    samples, histograms = parse(text)
    lines = ["Requests by route (count, p50, p95, errors):"]
    by_route: dict[tuple, HistogramData] = defaultdict(HistogramData)
    errors: dict[tuple, float] = defaultdict(float)
    for key, data in histograms.get(c.REQUEST_DURATION.prometheus_name, {}).items():
        route_key = (_label(key, _L[c.METHOD]), _label(key, _L[c.ROUTE], "(unmatched)"))
        merged = by_route[route_key]
        merged.count += data.count
        merged.total += data.total
        for bound, count in data.buckets.items():
            merged.buckets[bound] = merged.buckets.get(bound, 0.0) + count
        if _label(key, _L[c.ERROR_TYPE], "") or _label(key, _L[c.STATUS], "0").startswith("5"):
            errors[route_key] += data.count
    for (method, route), data in sorted(by_route.items()):
        lines.append(f"  {method:6} {route:28} {data.count:8.0f}  p50 {_ms(data.quantile(0.5)):>8}  "
                     f"p95 {_ms(data.quantile(0.95)):>8}  errors {errors[(method, route)]:.0f}")
    active = sum(samples.get(c.ACTIVE_REQUESTS.prometheus_name, {}).values())
    peak = max(samples.get(c.ACTIVE_REQUESTS_PEAK.prometheus_name, {}).values(), default=0.0)
    lines.append(f"In flight now: {active:.0f}   peak since start: {peak:.0f}")
    for key, value in sorted(samples.get(c.ROUTE_ACTIVE_REQUESTS_PEAK.prometheus_name, {}).items()):
        lines.append(f"  peak {_label(key, _L[c.METHOD]):6} {_label(key, _L[c.ROUTE]):28} {value:.0f}")
    outcomes: dict[str, float] = defaultdict(float)
    for key, value in samples.get(c.STREAMS.prometheus_name, {}).items():
        outcomes[_label(key, _L[c.STREAM_OUTCOME])] += value
    if outcomes:
        lines.append("Streams: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcomes.items())))
        ttfb = HistogramData()
        for data in histograms.get(c.STREAM_TIME_TO_FIRST_BYTE.prometheus_name, {}).values():
            ttfb.count += data.count
            for bound, count in data.buckets.items():
                ttfb.buckets[bound] = ttfb.buckets.get(bound, 0.0) + count
        chunks = sum(d.total for d in histograms.get(c.STREAM_CHUNKS.prometheus_name, {}).values())
        sent = sum(d.total for d in histograms.get(c.STREAM_BODY_SIZE.prometheus_name, {}).values())
        lines.append(f"  time to first byte p50 {_ms(ttfb.quantile(0.5))}, p95 {_ms(ttfb.quantile(0.95))}; "
                     f"{chunks:.0f} chunks, {sent / 1024:.1f} KiB sent")
    lines.extend(_llm_lines(histograms))
    lines.extend(_resource_lines(samples, histograms))
    waiting = samples.get(c.LIMITER_WAITING.prometheus_name, {})
    for key, value in sorted(waiting.items()):
        wait = histograms.get(c.LIMITER_WAIT_TIME.prometheus_name, {}).get(key, HistogramData())
        lines.append(f"Limiter {_label(key, _L[c.LIMITER_NAME])}: waiting now {value:.0f}, "
                     f"wait p95 {_ms(wait.quantile(0.95))} over {wait.count:.0f} acquisitions")
    return "\n".join(lines)


def _merged(series: dict[tuple, HistogramData], **labels: str | None) -> HistogramData:
    """All series whose labels match (None: the label is absent, which the exporter writes as "")."""
    merged = HistogramData()
    for key, data in series.items():
        if all((dict(key).get(k) or None) == (v or None) for k, v in labels.items()):
            merged.count += data.count
            merged.total += data.total
            for bound, count in data.buckets.items():
                merged.buckets[bound] = merged.buckets.get(bound, 0.0) + count
    return merged


def _llm_lines(histograms: dict) -> list[str]:
    """Tokens, time to first token and time per output token, per model."""
    durations = histograms.get(c.GEN_AI_SERVER_DURATION.prometheus_name, {})
    if not durations:
        return []
    lines = ["LLM requests by model (count, tokens in/out, time to first token p50/p95, per output token p50):"]
    tokens = histograms.get(c.GEN_AI_SERVER_TOKENS.prometheus_name, {})
    ttft = histograms.get(c.GEN_AI_SERVER_TTFT.prometheus_name, {})
    tpot = histograms.get(c.GEN_AI_SERVER_TPOT.prometheus_name, {})
    models = sorted({(_label(k, _L[c.GEN_AI_OPERATION]), _label(k, _L[c.GEN_AI_REQUEST_MODEL], "")) for k in durations})
    for operation, model in models:
        labels = {_L[c.GEN_AI_OPERATION]: operation, _L[c.GEN_AI_REQUEST_MODEL]: model or None}
        model = model or "(no model)"
        count = _merged(durations, **labels).count
        token_type, estimated_label = _L[c.GEN_AI_TOKEN_TYPE], _L[c.GEN_AI_ESTIMATED]
        tokens_in = _merged(tokens, **labels, **{token_type: "input"}).total
        tokens_out = _merged(tokens, **labels, **{token_type: "output"}).total
        estimated = _merged(tokens, **labels, **{token_type: "output", estimated_label: "true"}).total
        first, per_token = _merged(ttft, **labels), _merged(tpot, **labels)
        lines.append(f"  {operation:15} {model:20} {count:5.0f}  in {tokens_in:6.0f}  out {tokens_out:6.0f}"
                     + (f" ({estimated:.0f} estimated)" if estimated else "")
                     + f"  ttft {_ms(first.quantile(0.5))}/{_ms(first.quantile(0.95))}"
                     + f"  tpot {_ms(per_token.quantile(0.5))}")
    return lines


def _resource_lines(samples: dict, histograms: dict) -> list[str]:
    """Process, event loop, pools and caches, one line each where present."""
    lines = []
    rss = sum(samples.get(c.PROCESS_MEMORY_USAGE.prometheus_name, {}).values())
    if rss:
        cpu = sum(samples.get(c.PROCESS_CPU_TIME.prometheus_name, {}).values())
        threads = sum(samples.get(c.PROCESS_THREADS.prometheus_name, {}).values())
        lag = _merged(histograms.get(c.LOOP_LAG.prometheus_name, {}))
        lines.append(f"Process: {cpu:.1f} CPU s, {rss / 2**20:.0f} MiB resident, {threads:.0f} threads; "
                     f"event-loop lag p99 {_ms(lag.quantile(0.99))}")
    counts = samples.get(c.POOL_COUNT.prometheus_name, {})
    for pool in sorted({_label(k, _L[c.POOL_NAME]) for k in counts}):
        state = {_label(k, _L[c.POOL_STATE]): v for k, v in counts.items()
                 if _label(k, _L[c.POOL_NAME]) == pool}
        maximum = max((v for k, v in samples.get(c.POOL_MAX.prometheus_name, {}).items()
                       if _label(k, _L[c.POOL_NAME]) == pool), default=0)
        used, idle = state.get('used', 0), state.get('idle', 0)
        lines.append(f"Pool {pool}: used {used:.0f}, idle {idle:.0f}, max {maximum:.0f}")
    hits = samples.get(c.CACHE_HITS.prometheus_name, {})
    for key, hit in sorted(hits.items()):
        miss = samples.get(c.CACHE_MISSES.prometheus_name, {}).get(key, 0.0)
        ratio = f"{hit / (hit + miss):.0%}" if hit + miss else "-"
        lines.append(f"Cache {_label(key, _L[c.CACHE_NAME])}: {hit:.0f} hits, {miss:.0f} misses, hit ratio {ratio}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-llm-metrics", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("summary", "watch"):
        cmd = sub.add_parser(name)
        cmd.add_argument("url", nargs="?", default=DEFAULT_URL)
        if name == "watch":
            cmd.add_argument("--interval", type=float, default=2.0)
            cmd.add_argument("--count", type=int, default=0, help="stop after N screens (0: until Ctrl-C)")
    args = parser.parse_args(argv)
    try:
        if args.command == "summary":
            print(summary(read_metrics(args.url)))
            return 0
        shown = 0
        while True:
            report = summary(read_metrics(args.url))
            print(f"\x1b[2J\x1b[H{time.strftime('%H:%M:%S')}  {args.url}\n{report}", flush=True)
            shown += 1
            if args.count and shown >= args.count:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"otel-llm-metrics: cannot read {args.url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
