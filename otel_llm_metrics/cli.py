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
    return dict(key).get(name, default)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def summary(text: str) -> str:
    """A readable report of the key numbers in a Prometheus text exposition."""
    samples, histograms = parse(text)
    lines = ["Requests by route (count, p50, p95, errors):"]
    by_route: dict[tuple, HistogramData] = defaultdict(HistogramData)
    errors: dict[tuple, float] = defaultdict(float)
    for key, data in histograms.get("http_server_request_duration_seconds", {}).items():
        route_key = (_label(key, "http_request_method"), _label(key, "http_route", "(unmatched)"))
        merged = by_route[route_key]
        merged.count += data.count
        merged.total += data.total
        for bound, count in data.buckets.items():
            merged.buckets[bound] = merged.buckets.get(bound, 0.0) + count
        if _label(key, "error_type", "") or _label(key, "http_response_status_code", "0").startswith("5"):
            errors[route_key] += data.count
    for (method, route), data in sorted(by_route.items()):
        lines.append(f"  {method:6} {route:28} {data.count:8.0f}  p50 {_ms(data.quantile(0.5)):>8}  "
                     f"p95 {_ms(data.quantile(0.95)):>8}  errors {errors[(method, route)]:.0f}")
    active = sum(samples.get("http_server_active_requests", {}).values())
    peak = max(samples.get("http_server_active_requests_peak", {}).values(), default=0.0)
    lines.append(f"In flight now: {active:.0f}   peak since start: {peak:.0f}")
    for key, value in sorted(samples.get("http_server_route_active_requests_peak", {}).items()):
        lines.append(f"  peak {_label(key, 'http_request_method'):6} {_label(key, 'http_route'):28} {value:.0f}")
    outcomes: dict[str, float] = defaultdict(float)
    for key, value in samples.get("http_server_streams_total", {}).items():
        outcomes[_label(key, "http_stream_outcome")] += value
    if outcomes:
        lines.append("Streams: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcomes.items())))
        ttfb = HistogramData()
        for data in histograms.get("http_server_stream_time_to_first_byte_seconds", {}).values():
            ttfb.count += data.count
            for bound, count in data.buckets.items():
                ttfb.buckets[bound] = ttfb.buckets.get(bound, 0.0) + count
        chunks = sum(d.total for d in histograms.get("http_server_stream_chunks", {}).values())
        sent = sum(d.total for d in histograms.get("http_server_stream_body_size_bytes", {}).values())
        lines.append(f"  time to first byte p50 {_ms(ttfb.quantile(0.5))}, p95 {_ms(ttfb.quantile(0.95))}; "
                     f"{chunks:.0f} chunks, {sent / 1024:.1f} KiB sent")
    lines.extend(_llm_lines(histograms))
    lines.extend(_resource_lines(samples, histograms))
    waiting = samples.get("concurrency_limiter_waiting_requests", {})
    for key, value in sorted(waiting.items()):
        wait = histograms.get("concurrency_limiter_wait_time_seconds", {}).get(key, HistogramData())
        lines.append(f"Limiter {_label(key, 'concurrency_limiter_name')}: waiting now {value:.0f}, "
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
    durations = histograms.get("gen_ai_server_request_duration_seconds", {})
    if not durations:
        return []
    lines = ["LLM requests by model (count, tokens in/out, time to first token p50/p95, per output token p50):"]
    tokens = histograms.get("gen_ai_server_token_usage", {})
    ttft = histograms.get("gen_ai_server_time_to_first_token_seconds", {})
    tpot = histograms.get("gen_ai_server_time_per_output_token_seconds", {})
    models = sorted({(_label(k, "gen_ai_operation_name"), _label(k, "gen_ai_request_model", "")) for k in durations})
    for operation, model in models:
        labels = {"gen_ai_operation_name": operation, "gen_ai_request_model": model or None}
        model = model or "(no model)"
        count = _merged(durations, **labels).count
        tokens_in = _merged(tokens, gen_ai_token_type="input", **labels).total
        tokens_out = _merged(tokens, gen_ai_token_type="output", **labels).total
        estimated = _merged(tokens, gen_ai_token_type="output", gen_ai_usage_estimated="true", **labels).total
        first, per_token = _merged(ttft, **labels), _merged(tpot, **labels)
        lines.append(f"  {operation:15} {model:20} {count:5.0f}  in {tokens_in:6.0f}  out {tokens_out:6.0f}"
                     + (f" ({estimated:.0f} estimated)" if estimated else "")
                     + f"  ttft {_ms(first.quantile(0.5))}/{_ms(first.quantile(0.95))}"
                     + f"  tpot {_ms(per_token.quantile(0.5))}")
    return lines


def _resource_lines(samples: dict, histograms: dict) -> list[str]:
    """Process, event loop, pools and caches, one line each where present."""
    lines = []
    rss = sum(samples.get("process_memory_usage_bytes", {}).values())
    if rss:
        cpu = sum(samples.get("process_cpu_time_seconds_total", {}).values())
        threads = sum(samples.get("process_thread_count", {}).values())
        lag = _merged(histograms.get("asyncio_event_loop_lag_seconds", {}))
        lines.append(f"Process: {cpu:.1f} CPU s, {rss / 2**20:.0f} MiB resident, {threads:.0f} threads; "
                     f"event-loop lag p99 {_ms(lag.quantile(0.99))}")
    counts = samples.get("db_client_connection_count", {})
    for pool in sorted({_label(k, "db_client_connection_pool_name") for k in counts}):
        state = {_label(k, "db_client_connection_state"): v for k, v in counts.items()
                 if _label(k, "db_client_connection_pool_name") == pool}
        maximum = max((v for k, v in samples.get("db_client_connection_max", {}).items()
                       if _label(k, "db_client_connection_pool_name") == pool), default=0)
        used, idle = state.get('used', 0), state.get('idle', 0)
        lines.append(f"Pool {pool}: used {used:.0f}, idle {idle:.0f}, max {maximum:.0f}")
    hits = samples.get("cache_hits_total", {})
    for key, hit in sorted(hits.items()):
        miss = samples.get("cache_misses_total", {}).get(key, 0.0)
        ratio = f"{hit / (hit + miss):.0%}" if hit + miss else "-"
        lines.append(f"Cache {_label(key, 'cache_name')}: {hit:.0f} hits, {miss:.0f} misses, hit ratio {ratio}")
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
