"""``otel-llm-metrics``: read metrics endpoints and show the numbers that matter, once or live.

    otel-llm-metrics summary  http://127.0.0.1:9464/metrics
    otel-llm-metrics snapshot http://127.0.0.1:9464/metrics --json --state /tmp/llm-state.json
    otel-llm-metrics watch    http://127.0.0.1:9464/metrics http://127.0.0.1:9465/metrics --interval 2

Several URLs (one per worker or per instance) are read and merged. Percentiles come from histogram
buckets, so where a bucket is wide the output gives its bounds rather than a made-up value, with
the mean beside it; a number nobody reported prints as "-", never 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
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

    def bucket(self, q: float) -> tuple[float | None, float | None]:
        """The bounds (lower, upper] of the bucket that holds percentile ``q``; (None, None) when empty."""
        if not self.count:
            return None, None
        rank, lower = q * self.count, 0.0
        for bound in sorted(self.buckets):
            if self.buckets[bound] >= rank:
                return lower, bound
            lower = bound
        return lower, math.inf

    def estimate(self, q: float) -> float | None:
        """Percentile ``q`` interpolated, where its bucket is narrow enough to name a value (its upper
        bound at most twice its lower); None where it is not."""
        low, high = self.bucket(q)
        if low and high is not None and high <= 2 * low:
            return self.quantile(q)
        return None

    def describe(self, q: float) -> str:
        """Percentile ``q`` as honestly as the buckets allow: a value, or the bucket ("100-250 ms")."""
        low, high = self.bucket(q)
        value = self.estimate(q)
        if low is None or high is None:
            return "-"
        if value is not None:
            return _ms(value)
        if math.isinf(high):
            return f">{_ms(low)}"
        return f"{_ms_number(low)}-{_ms(high)}" if low else f"<={_ms(high)}"

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def add(self, other: HistogramData) -> None:
        """Merge another series (of another label set, worker or instance) into this one."""
        self.count += other.count
        self.total += other.total
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count

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


def read_all(urls: list[str], timeout: float = 5.0) -> list[str]:
    """The expositions of several endpoints; raises OSError naming the URL that failed."""
    texts = []
    for url in urls:
        try:
            texts.append(read_metrics(url, timeout))
        except OSError as exc:
            raise OSError(f"cannot read {url}: {exc}") from exc
    return texts


def parse(texts: str | Sequence[str]) -> tuple[dict, dict]:
    """(samples by name -> {labels tuple: value}, histograms by name -> {labels tuple: HistogramData}).

    Several expositions (one per endpoint) are merged: the same series from two endpoints is summed,
    and a peak takes the larger.
    """
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    histograms: dict[str, dict[tuple, HistogramData]] = defaultdict(lambda: defaultdict(HistogramData))
    for text in [texts] if isinstance(texts, str) else texts:
        one_samples, one_histograms = _parse_one(text)
        for name, series in one_samples.items():
            for key, value in series.items():
                before = samples[name].get(key)
                samples[name][key] = value if before is None else (
                    max(before, value) if name.endswith("_peak") else before + value)
        for name, series in one_histograms.items():
            for key, data in series.items():
                histograms[name][key].add(data)
    return samples, histograms


def _parse_one(text: str) -> tuple[dict, dict]:
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


def _ms_number(seconds: float) -> str:
    milliseconds = seconds * 1000
    return f"{milliseconds:.0f}" if milliseconds >= 10 or milliseconds == int(milliseconds) else f"{milliseconds:.1f}"


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{_ms_number(seconds)} ms"


def summary(texts: str | Sequence[str]) -> str:
    """A readable report of the key numbers in one or several Prometheus text expositions."""
    samples, histograms = parse(texts)
    lines = ["Requests by route (count, p50, p95, mean, errors):"]
    by_route, errors = _by_route(histograms)
    for (method, route), data in sorted(by_route.items()):
        lines.append(f"  {method:6} {route:28} {data.count:8.0f}  p50 {data.describe(0.5):>11}  "
                     f"p95 {data.describe(0.95):>11}  mean {_ms(data.mean):>8}  errors {errors[(method, route)]:.0f}")
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
        ttfb = _merged(histograms.get(c.STREAM_TIME_TO_FIRST_BYTE.prometheus_name, {}))
        chunks = sum(d.total for d in histograms.get(c.STREAM_CHUNKS.prometheus_name, {}).values())
        sent = sum(d.total for d in histograms.get(c.STREAM_BODY_SIZE.prometheus_name, {}).values())
        lines.append(f"  time to first byte p50 {ttfb.describe(0.5)}, p95 {ttfb.describe(0.95)} "
                     f"(mean {_ms(ttfb.mean)}); "
                     f"{chunks:.0f} chunks, {sent / 1024:.1f} KiB sent")
    lines.extend(_llm_lines(histograms))
    lines.extend(_resource_lines(samples, histograms))
    waiting = samples.get(c.LIMITER_WAITING.prometheus_name, {})
    for key, value in sorted(waiting.items()):
        wait = histograms.get(c.LIMITER_WAIT_TIME.prometheus_name, {}).get(key, HistogramData())
        lines.append(f"Limiter {_label(key, _L[c.LIMITER_NAME])}: waiting now {value:.0f}, "
                     f"wait p95 {wait.describe(0.95)} (mean {_ms(wait.mean)}) over {wait.count:.0f} acquisitions")
    return "\n".join(lines)


def _by_route(histograms: dict) -> tuple[dict[tuple, HistogramData], dict[tuple, float]]:
    """Request durations and error counts by (method, route), every other label merged."""
    by_route: dict[tuple, HistogramData] = defaultdict(HistogramData)
    errors: dict[tuple, float] = defaultdict(float)
    for key, data in histograms.get(c.REQUEST_DURATION.prometheus_name, {}).items():
        route_key = (_label(key, _L[c.METHOD]), _label(key, _L[c.ROUTE], "(unmatched)"))
        by_route[route_key].add(data)
        if _label(key, _L[c.ERROR_TYPE], "") or _label(key, _L[c.STATUS], "0").startswith("5"):
            errors[route_key] += data.count
    return by_route, errors


def _models(histograms: dict) -> list[dict]:
    """Per (operation, requested model): request count, token histograms and first-token timings."""
    durations = histograms.get(c.GEN_AI_SERVER_DURATION.prometheus_name, {})
    tokens = histograms.get(c.GEN_AI_SERVER_TOKENS.prometheus_name, {})
    token_type, estimated_label = _L[c.GEN_AI_TOKEN_TYPE], _L[c.GEN_AI_ESTIMATED]
    found = []
    for operation, model in sorted({(_label(k, _L[c.GEN_AI_OPERATION]), _label(k, _L[c.GEN_AI_REQUEST_MODEL], ""))
                                    for k in durations}):
        labels = {_L[c.GEN_AI_OPERATION]: operation, _L[c.GEN_AI_REQUEST_MODEL]: model or None}
        found.append({
            "operation": operation, "model": model or None, "requests": _merged(durations, **labels).count,
            "input": _merged(tokens, **labels, **{token_type: "input"}),
            "output": _merged(tokens, **labels, **{token_type: "output"}),
            "estimated": _merged(tokens, **labels, **{token_type: "output", estimated_label: "true"}).total,
            "ttft": _merged(histograms.get(c.GEN_AI_SERVER_TTFT.prometheus_name, {}), **labels),
            "tpot": _merged(histograms.get(c.GEN_AI_SERVER_TPOT.prometheus_name, {}), **labels)})
    return found


def _merged(series: dict[tuple, HistogramData], **labels: str | None) -> HistogramData:
    """All series whose labels match (None: the label is absent, which the exporter writes as "")."""
    merged = HistogramData()
    for key, data in series.items():
        if all((dict(key).get(k) or None) == (v or None) for k, v in labels.items()):
            merged.add(data)
    return merged


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
    by_route, errors = _by_route(histograms)
    models = _models(histograms)
    totals = {"requests": sum(d.count for d in by_route.values()), "errors": sum(errors.values()),
              "input_tokens": sum(m["input"].total for m in models),
              "output_tokens": sum(m["output"].total for m in models)}
    outcomes: dict[str, float] = defaultdict(float)
    for key, value in samples.get(c.STREAMS.prometheus_name, {}).items():
        outcomes[_label(key, _L[c.STREAM_OUTCOME])] += value
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
                    "duration_s": _percentiles(data)} for (method, route), data in sorted(by_route.items())],
        "streams": {"outcomes": dict(sorted(outcomes.items())), "time_to_first_byte_s": _percentiles(
            _merged(histograms.get(c.STREAM_TIME_TO_FIRST_BYTE.prometheus_name, {})))},
        "models": [{"operation": m["operation"], "model": m["model"], "requests": m["requests"],
                    "input_tokens": m["input"].total if m["input"].count else None,
                    "output_tokens": m["output"].total if m["output"].count else None,
                    "estimated_output_tokens": m["estimated"], "time_to_first_token_s": _percentiles(m["ttft"]),
                    "time_per_output_token_s": _percentiles(m["tpot"])} for m in models],
    }


def _count(data: HistogramData) -> str:
    """A total of something counted; "-" when nothing was reported (unknown is not zero)."""
    return f"{data.total:.0f}" if data.count else "-"


def _llm_lines(histograms: dict) -> list[str]:
    """Tokens, time to first token and time per output token, per model."""
    models = _models(histograms)
    if not models:
        return []
    lines = ["LLM requests by model (count, tokens in/out, time to first token p50/p95 and mean, "
             "per output token p50 and mean):"]
    for m in models:
        first, per_token = m["ttft"], m["tpot"]
        lines.append(f"  {m['operation']:15} {m['model'] or '(no model)':20} {m['requests']:5.0f}  "
                     f"in {_count(m['input']):>6}  out {_count(m['output']):>6}"
                     + (f" ({m['estimated']:.0f} estimated)" if m["estimated"] else "")
                     + f"  ttft {first.describe(0.5)}/{first.describe(0.95)} (mean {_ms(first.mean)})"
                     + f"  tpot {per_token.describe(0.5)} (mean {_ms(per_token.mean)})")
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
                     f"event-loop lag p99 {lag.describe(0.99)}")
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
    for name in ("summary", "snapshot", "watch"):
        cmd = sub.add_parser(name)
        cmd.add_argument("urls", nargs="*", default=[DEFAULT_URL], metavar="URL",
                         help=f"metrics endpoints, merged (default {DEFAULT_URL})")
        if name == "watch":
            cmd.add_argument("--interval", type=float, default=2.0)
            cmd.add_argument("--count", type=int, default=0, help="stop after N screens (0: until Ctrl-C)")
        if name == "snapshot":
            cmd.add_argument("--json", action="store_true", help=f"one JSON object, schema {SNAPSHOT_SCHEMA}")
            cmd.add_argument("--state", metavar="FILE", help="keep this snapshot in FILE; with the one there "
                                                             "before, the JSON gives rates since then")
    args = parser.parse_args(argv)
    try:
        if args.command == "watch":
            return _watch(args.urls, args.interval, args.count)
        try:
            texts = read_all(args.urls)
        except OSError as exc:
            print(f"otel-llm-metrics: {exc}", file=sys.stderr)
            return 1
        if args.command == "snapshot" and args.json:
            print(json.dumps(_snapshot_with_state(texts, args.state), indent=1), flush=True)
        else:
            print(summary(texts), flush=True)
        return 0
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # the reader went away (`| head`): not a read error, and nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _snapshot_with_state(texts: list[str], state: str | None) -> dict:
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


def _watch(urls: list[str], interval: float, count: int) -> int:
    """Redraw every ``interval`` seconds; an endpoint that does not answer is retried, and said so."""
    shown = 0
    while True:
        try:
            report = summary(read_all(urls))
        except OSError as exc:
            report = f"{exc}; retrying every {interval:g}s (Ctrl-C to stop)"
        print(f"\x1b[2J\x1b[H{time.strftime('%H:%M:%S')}  {' '.join(urls)}\n{report}", flush=True)
        shown += 1
        if count and shown >= count:
            return 0
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
