"""Exponential histograms for readers that prefer them: the SDK's buckets, percentiles within the
mapping's error, delta, several readers, groups summed, bounded size, and over OTLP."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time

import pytest
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

from otel_llm_metrics import Registry, Telemetry, load_settings, series
from otel_llm_metrics.exponential import ExponentialSnapshot, ExponentialSum, at_scale, new_mapping, subtract
from otel_llm_metrics.http.stats import request_key
from otel_llm_metrics.series import Histogram
from tests.apps import starlette_app
from tests.asgi_client import call
from tests.otlp_receiver import Receiver

DURATION = "http.server.request.duration"
KEY = request_key("GET", "http", "/items/{id}", 200, None)
SEED = 20240519


def _running_total(values: list[float]) -> float:
    """What a histogram's running total holds: one += per value, in order (sum() compensates from Python 3.12 on)."""
    total = 0.0
    for value in values:
        total += value
    return total


@pytest.fixture(autouse=True)
def _exponential_off_afterwards(monkeypatch):
    """The mode is process-wide once a reader asks: each test starts and ends without it."""
    monkeypatch.setattr(series, "_exponential", None)


@pytest.fixture
def telemetry_with():
    made: list[Telemetry] = []

    def make(*readers: InMemoryMetricReader) -> Telemetry:
        telemetry = Telemetry(load_settings(environ={}, metrics_exporters=("none",)), Registry(), list(readers))
        made.append(telemetry)
        return telemetry

    yield make
    for telemetry in made:
        telemetry.shutdown()


def exponential_reader(temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
                       **limits: int) -> InMemoryMetricReader:
    return InMemoryMetricReader(preferred_temporality={SdkHistogram: temporality},
                                preferred_aggregation={SdkHistogram: ExponentialBucketHistogramAggregation(**limits)})


def points(reader: InMemoryMetricReader, name: str = DURATION) -> list:
    data = reader.get_metrics_data()
    return [point for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
            if metric.name == name for point in metric.data.data_points]


def one(reader: InMemoryMetricReader, name: str = DURATION):  # noqa: ANN201 - a data point of either kind
    found = points(reader, name)
    assert len(found) == 1, found
    return found[0]


def lognormal(n: int = 10_000, seed: int = SEED) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.lognormvariate(-2.0, 1.0) for _ in range(n)]


def percentile_from_buckets(point: ExponentialHistogramDataPoint, q: float) -> float:
    """The upper bound of the bucket holding the nearest-rank q-quantile: base ** (index + 1)."""
    rank = math.ceil(q * point.count)
    if rank <= point.zero_count:
        return 0.0
    seen = point.zero_count
    base = 2.0 ** (2.0 ** -point.scale)
    for i, count in enumerate(point.positive.bucket_counts):
        seen += count
        if seen >= rank:
            return base ** (point.positive.offset + i + 1)
    raise AssertionError("rank past the last bucket")


def exact_percentile(values: list[float], q: float) -> float:
    return sorted(values)[math.ceil(q * len(values)) - 1]


def trimmed(point) -> tuple[int, tuple[int, ...]]:  # noqa: ANN001 - either library's data point
    """(offset, counts) without empty buckets at either end: the SDK keeps some, we do not."""
    counts, offset = list(point.positive.bucket_counts), point.positive.offset
    while counts and not counts[0]:
        counts.pop(0)
        offset += 1
    while counts and not counts[-1]:
        counts.pop()
    return offset, tuple(counts)


def summed(values: list[float], max_size: int = 160) -> ExponentialSnapshot:
    total = ExponentialSum(max_size)
    for value in values:
        total += value
    snap = total.snapshot()
    assert snap is not None
    return snap


def record_durations(telemetry: Telemetry, values: list[float], key: tuple = KEY) -> None:
    h = telemetry.registry.http.requests.get(key).duration
    for value in values:
        h.record(value)


# -- through a real telemetry and bridge ---------------------------------------------------------------
def test_percentiles_are_within_the_mappings_relative_error(telemetry_with):
    reader = exponential_reader()
    telemetry = telemetry_with(reader)
    values = lognormal()
    record_durations(telemetry, values)
    point = one(reader)
    assert isinstance(point, ExponentialHistogramDataPoint)
    assert (point.count, point.sum, point.min, point.max) == (
        len(values), _running_total(values), min(values), max(values))
    assert point.zero_count == 0 and point.scale <= 20 and len(point.positive.bucket_counts) <= 160
    error = 2.0 ** (2.0 ** -point.scale) - 1
    for q in (0.5, 0.95, 0.99):
        exact, estimate = exact_percentile(values, q), percentile_from_buckets(point, q)
        assert abs(estimate - exact) / exact <= error, (q, exact, estimate, error)


def test_buckets_are_the_sdks_own_for_the_same_values(telemetry_with):
    """The SDK's own exponential histogram, fed the same values in the same provider, exports the same
    scale, buckets and counts: its mapping and max_size semantics, downscaling included."""
    reader = exponential_reader(max_size=40)
    telemetry = telemetry_with(reader)
    sdk_histogram = telemetry.meter_provider.get_meter("reference").create_histogram("reference")
    rnd = random.Random(SEED)
    values = [*lognormal(3000), *(2.0 ** rnd.randint(-20, 20) for _ in range(300)), 0.0, 0.0, 1.0, 1024.0]
    rnd.shuffle(values)
    record_durations(telemetry, values)
    for value in values:
        sdk_histogram.record(value)
    ours, theirs = one(reader), one(reader, "reference")
    assert (ours.scale, trimmed(ours), ours.zero_count, ours.count) == \
        (theirs.scale, trimmed(theirs), theirs.zero_count, theirs.count)
    assert math.isclose(ours.sum, theirs.sum, rel_tol=1e-12) and (ours.min, ours.max) == (theirs.min, theirs.max)


def test_mapping_agrees_with_the_sdks_map_to_index_value_by_value():
    rnd = random.Random(SEED)
    values = [10 ** rnd.uniform(-300, 300) for _ in range(3000)]
    values += [2.0 ** e for e in range(-1022, 1024, 7)] + [math.nextafter(2.0 ** e, math.inf) for e in range(-60, 60)]
    values += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, math.inf]
    for scale in (20, 14, 8, 3, 1, 0, -3):
        mapping = new_mapping(scale)
        for value in values:
            total = ExponentialSum(max_scale=scale)
            total += value
            assert total.snapshot().offset == mapping.map_to_index(value), (scale, value)


def test_delta_temporality_reports_the_second_interval_only(telemetry_with):
    reader = exponential_reader(AggregationTemporality.DELTA)
    telemetry = telemetry_with(reader)
    first, second = lognormal(4000, seed=1), [v * 30 for v in lognormal(3000, seed=2)]
    record_durations(telemetry, first)
    assert one(reader).count == len(first)
    record_durations(telemetry, second)
    point = one(reader)
    assert point.count == len(second) and math.isclose(point.sum, sum(second), rel_tol=1e-9)
    expected = at_scale(summed(second), point.scale)
    assert trimmed(point) == (expected.offset, expected.counts), "exactly the second interval's buckets"
    assert point.min is None and point.max is None, "unknown for the interval alone"
    for q in (0.5, 0.95, 0.99):
        exact, estimate = exact_percentile(second, q), percentile_from_buckets(point, q)
        assert abs(estimate - exact) / exact <= 2.0 ** (2.0 ** -point.scale) - 1
    assert points(reader) == [], "nothing new, nothing reported"


def test_two_readers_each_get_their_own_kind(telemetry_with):
    explicit, exponential = InMemoryMetricReader(), exponential_reader()
    telemetry = telemetry_with(explicit, exponential)
    values = lognormal(500)
    record_durations(telemetry, values)
    a, b = one(explicit), one(exponential)
    assert isinstance(a, HistogramDataPoint) and isinstance(b, ExponentialHistogramDataPoint)
    assert a.count == b.count == sum(a.bucket_counts) == len(values)
    assert a.sum == b.sum == _running_total(values)


def test_a_billion_fold_range_downscales_and_stays_within_max_size(telemetry_with):
    wide, narrow = exponential_reader(), exponential_reader(max_size=20, max_scale=10)
    telemetry = telemetry_with(wide, narrow)
    rnd = random.Random(SEED)
    values = [10 ** rnd.uniform(-9, 6) for _ in range(5000)] + [1e-9, 1e6]
    record_durations(telemetry, values)
    for reader, max_size in ((wide, 160), (narrow, 20)):
        point = one(reader)
        assert len(point.positive.bucket_counts) <= max_size and point.scale < 10
        assert sum(point.positive.bucket_counts) == point.count == len(values)
        base = 2.0 ** (2.0 ** -point.scale)
        assert base ** point.positive.offset < 1e-9 <= base ** (point.positive.offset + 1)
        assert base ** (point.positive.offset + len(point.positive.bucket_counts)) >= 1e6


def test_groups_writing_one_instrument_are_summed_at_a_common_scale(telemetry_with):
    """The middleware's group and the span processor's (locked) group both write the request duration."""
    reader = exponential_reader()
    telemetry = telemetry_with(reader)
    narrow, wide = lognormal(2000, seed=3), [10 ** v for v in (random.Random(4).uniform(-6, 3) for _ in range(2000))]
    record_durations(telemetry, narrow)
    for value in wide:
        telemetry.registry.http.span_requests.record(KEY, "duration", value)
    point = one(reader)
    everything = summed(narrow + wide)
    assert point.count == 4000 and point.scale == everything.scale
    assert trimmed(point) == (everything.offset, everything.counts)
    assert math.isclose(point.sum, sum(narrow) + sum(wide)) and point.max == max(wide + narrow)


def test_series_that_took_traffic_before_attach_are_exact_from_then_on(telemetry_with):
    registry = Registry()
    before, after = lognormal(100, seed=5), lognormal(300, seed=6)
    h = registry.http.requests.get(KEY).duration
    for value in before:
        h.record(value)
    explicit, exponential = InMemoryMetricReader(), exponential_reader()
    telemetry = Telemetry(load_settings(environ={}, metrics_exporters=("none",)), registry, [explicit, exponential])
    try:
        for value in after:
            h.record(value)
        assert one(exponential).count == len(after) and one(exponential).sum == _running_total(after)
        assert one(explicit).count == 400 and math.isclose(one(explicit).sum, sum(before) + sum(after))
    finally:
        telemetry.shutdown()


def test_gathered_histograms_merge_their_exponential_buckets(telemetry_with):
    reader = exponential_reader()
    telemetry = telemetry_with(reader)
    gathered = Histogram((0.1, 1.0))  # as a streamed call gathers its chunk gaps
    gaps = lognormal(200, seed=7)
    for value in gaps:
        gathered.record(value)
    group = telemetry.registry.http.requests
    group.get(KEY).duration.record(0.5)
    group.get(KEY).duration.merge(gathered)
    point = one(reader)
    expected = summed([0.5, *gaps])
    assert (point.count, trimmed(point)) == (201, (expected.offset, expected.counts))
    assert math.isclose(point.sum, 0.5 + sum(gaps))


def test_a_reset_series_stands_alone_in_the_next_delta():
    earlier = summed(lognormal(50, seed=8))
    now = summed(lognormal(10, seed=9))  # after a fork the series restarted from zero
    assert subtract(now, earlier) is None
    gained = subtract(summed(lognormal(50, seed=8) + [3.0]), earlier)
    assert gained is not None and gained.count == 1 and gained.zero_count == 0


def test_snapshots_taken_while_the_event_loop_writes_are_consistent():
    """Copies from a collection thread, while the writer grows and downscales, are each a true prefix."""
    rnd = random.Random(SEED)
    values = [10 ** rnd.uniform(-9, 6) for _ in range(30_000)]
    total, snaps, done = ExponentialSum(40), [], threading.Event()

    def write() -> None:
        nonlocal total
        for value in values:
            total += value
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        snaps.append(total.snapshot())
    writer.join()
    final = total.snapshot()
    assert final == summed(values, 40)
    for snap in snaps:
        assert snap is not None and len(snap.counts) <= 40
        assert subtract(at_scale(final, snap.scale), snap) is not None, "every bucket within what came later"


def test_the_default_mode_keeps_a_float_total():
    h = Histogram((1.0,))
    h.record(0.5)
    assert type(h.total) is float


# -- over OTLP -----------------------------------------------------------------------------------------
def _exponential_points(receiver: Receiver, name: str) -> list:
    return [point for request in receiver.metrics_requests() for rm in request.resource_metrics
            for sm in rm.scope_metrics for metric in sm.metrics
            if metric.name == name and metric.HasField("exponential_histogram")
            for point in metric.exponential_histogram.data_points]


def test_an_otlp_exporter_asking_for_exponential_histograms_receives_them(monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                       "base2_exponential_bucket_histogram")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # exports only when flushed
    telemetry = Telemetry(load_settings(), Registry())
    try:
        app = telemetry.instrument(starlette_app())
        for _ in range(5):
            assert asyncio.run(call(app, "GET", "/items/1")).status == 200
        deadline = time.monotonic() + 10
        found: list = []
        while not found and time.monotonic() < deadline:
            assert telemetry.meter_provider.force_flush(10_000)
            found = [p for p in _exponential_points(receiver, DURATION) if p.count == 5]
        assert found, f"no exponential {DURATION} point with 5 requests in {len(receiver.exports)} exports"
        point = found[-1]
        assert sum(point.positive.bucket_counts) == 5 and point.zero_count == 0
        assert -10 <= point.scale <= 20 and len(point.positive.bucket_counts) <= 160
        assert 0 < point.min <= point.max and point.min * 5 <= point.sum <= point.max * 5
        base = 2.0 ** (2.0 ** -point.scale)
        assert base ** point.positive.offset < point.min and point.max <= base ** (
            point.positive.offset + len(point.positive.bucket_counts))
        attributes = {kv.key: kv.value.string_value or kv.value.int_value for kv in point.attributes}
        assert attributes["http.route"] == "/items/{item_id}" and attributes["http.response.status_code"] == 200
        assert not [m for request in receiver.metrics_requests() for rm in request.resource_metrics
                    for sm in rm.scope_metrics for m in sm.metrics
                    if m.name == DURATION and m.HasField("histogram")], "no explicit copy to this reader"
    finally:
        telemetry.shutdown()
        receiver.stop()
