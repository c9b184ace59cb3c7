"""What exponential histograms cost per record, and that the default path costs what it did.

    python benchmarks/bench_exponential.py [--values 20000] [--repeats 15]

Interleaved repeats (each variant once per round, the median per value reported):
- ``Histogram.record``: the class as it was before exponential histograms (copied below) vs today's,
  default mode (a float total) and exponential mode (an ExponentialSum total);
- the middleware's inlined updates, compiled from otel_llm_metrics/http/middleware.py itself, on the
  old series type, on today's default series, and on exponential ones;
- the SDK's own ways: ``_ExponentialBucketHistogramAggregation.aggregate``, and its mapping's
  ``map_to_index`` plus a bucket increment, against ``ExponentialSum += value``.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import re
import statistics
import sys
import textwrap
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.context import get_current  # noqa: E402
from opentelemetry.sdk.metrics._internal.aggregation import _ExponentialBucketHistogramAggregation  # noqa: E402
from opentelemetry.sdk.metrics._internal.exemplar import SimpleFixedSizeExemplarReservoir  # noqa: E402
from opentelemetry.sdk.metrics._internal.measurement import Measurement  # noqa: E402
from opentelemetry.sdk.metrics.export import AggregationTemporality  # noqa: E402

from otel_llm_metrics import catalogue as c  # noqa: E402
from otel_llm_metrics.exponential import ExponentialSum, new_mapping  # noqa: E402
from otel_llm_metrics.http.stats import REQUEST_INSTRUMENTS  # noqa: E402
from otel_llm_metrics.series import Histogram, HistogramGroup  # noqa: E402


class BaselineHistogram:
    """series.Histogram's record path before exponential histograms, verbatim."""

    __slots__ = ("bounds", "counts", "total", "min", "max", "exemplars")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.exemplars = None

    def record(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


def inlined_block() -> Callable:
    """The middleware's inlined histogram updates, taken from its source: what runs per request."""
    source = (ROOT / "otel_llm_metrics" / "http" / "middleware.py").read_text()
    found = re.search(r"\n( +h = series\.duration\n.*?h\.total \+= size\n.*?h\.total \+= size\n)", source, re.S)
    if found is None:
        raise SystemExit("the inlined block of middleware.py was not found")
    body = textwrap.indent(textwrap.dedent(found.group(1)), "        ")
    code = (f"def block(self, series, values):\n    for duration in values:\n{body}")
    namespace: dict = {"bisect_left": bisect_left}
    exec(compile(code, "middleware-inlined-block", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["block"]


def _series(kind: str) -> object:
    series = HistogramGroup(REQUEST_INSTRUMENTS).get(("GET", "http", "/x", 200, None, None))
    if kind == "baseline":  # the same slotted series type, holding histograms as they were
        for name, spec in REQUEST_INSTRUMENTS.items():
            setattr(series, name, BaselineHistogram(spec.buckets))
    elif kind == "exponential":
        for name in REQUEST_INSTRUMENTS:
            getattr(series, name).total = ExponentialSum()
    return series


def _histogram(kind: str) -> BaselineHistogram | Histogram:
    if kind == "baseline":
        return BaselineHistogram(c.REQUEST_DURATION.buckets)
    h = Histogram(c.REQUEST_DURATION.buckets)
    if kind == "exponential":
        h.total = ExponentialSum()
    return h


def variants(values: list[float]) -> dict[str, Callable[[], None]]:
    block = inlined_block()
    me = SimpleNamespace(request_bytes=517, response_bytes=2311, exemplar_ids=None)
    out: dict[str, Callable[[], None]] = {}
    for kind in ("baseline", "default", "exponential"):
        h = _histogram(kind)

        def record(record=h.record) -> None:
            for value in values:
                record(value)
        out[f"Histogram.record {kind}"] = record
        series = _series(kind)
        out[f"inlined block {kind}"] = lambda series=series: block(me, series, values)

    aggregation = _ExponentialBucketHistogramAggregation(
        {}, lambda size: SimpleFixedSizeExemplarReservoir(size=size), AggregationTemporality.DELTA, 0)
    measurements = [Measurement(v, 0, None, get_current(), {}) for v in values]
    out["SDK aggregate"] = lambda: [aggregation.aggregate(m, False) for m in measurements] and None
    index, counts = new_mapping(20).map_to_index, {}

    def map_and_increment() -> None:
        for value in values:
            i = index(value)
            counts[i] = counts.get(i, 0) + 1
    out["SDK map_to_index + increment"] = map_and_increment
    total = ExponentialSum()

    def exponential_sum() -> None:
        nonlocal total
        for value in values:
            total += value
    out["ExponentialSum += value"] = exponential_sum
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rnd = random.Random(42)
    values = [rnd.lognormvariate(-2.5, 1.2) for _ in range(args.values)]  # seconds, like request durations
    timed = variants(values)
    samples: dict[str, list[float]] = {name: [] for name in timed}
    gc.disable()
    for _ in range(args.repeats):
        for name, fn in timed.items():
            started = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - started) / len(values) * 1e9)
    gc.enable()
    print(f"{len(values)} values x {args.repeats} interleaved rounds; ns per value (median, min)")
    for name, per_value in samples.items():
        print(f"  {name:34s} {statistics.median(per_value):8.0f} {min(per_value):8.0f}")
    for label, pick in (("median", statistics.median), ("min", min)):
        at = {name: pick(per_value) for name, per_value in samples.items()}
        for what in ("Histogram.record", "inlined block"):
            base, now, exp = (at[f"{what} {kind}"] for kind in ("baseline", "default", "exponential"))
            print(f"{label:6s} {what}: default vs before {now - base:+.0f} ns ({(now - base) / base:+.1%}); "
                  f"exponential mode adds {exp - now:.0f} ns")
    same = Histogram.record.__code__.co_code == BaselineHistogram.record.__code__.co_code
    print(f"Histogram.record bytecode identical to before: {same}")


if __name__ == "__main__":
    main()
