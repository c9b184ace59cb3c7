"""The HTTP numbers one process keeps: histogram groups and in-flight counters.

Everything here is plain Python written by the event loop; ``observe`` functions turn the
counters into OTel observations at collection time only.
"""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import HistogramGroup


class HttpStats:
    """In-flight counters, peaks and the request/stream histogram groups."""

    def __init__(self, max_series: int = 2000) -> None:
        self.requests = HistogramGroup((c.REQUEST_DURATION, c.REQUEST_BODY_SIZE, c.RESPONSE_BODY_SIZE),
                                       max_series)
        self.streams = HistogramGroup((c.STREAM_DURATION, c.STREAM_TIME_TO_FIRST_BYTE, c.STREAM_CHUNKS,
                                       c.STREAM_BODY_SIZE), max_series)
        self.max_series = max_series
        self.reset()

    def reset(self) -> None:
        """Forget everything (a forked worker starts from zero, not from its parent's numbers)."""
        self.requests.reset()
        self.streams.reset()
        self.active: dict[tuple[str, str], int] = {}
        self.in_flight = 0
        self.peak = 0
        self.route_active: dict[tuple[str, str | None], int] = {}
        self.route_peak: dict[tuple[str, str | None], int] = {}

    # -- hot path ---------------------------------------------------------------------------
    def started(self, key: tuple[str, str]) -> None:
        self.active[key] = self.active.get(key, 0) + 1
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight

    def ended(self, key: tuple[str, str]) -> None:
        self.active[key] -= 1
        self.in_flight -= 1

    def route_started(self, key: tuple[str, str | None]) -> None:
        route_active = self.route_active
        count = route_active.get(key)
        if count is None:
            if len(route_active) >= self.max_series:
                return
            count = 0
        count += 1
        route_active[key] = count
        if count > self.route_peak.get(key, 0):
            self.route_peak[key] = count

    def route_ended(self, key: tuple[str, str | None]) -> None:
        if key in self.route_active:
            self.route_active[key] -= 1

    # -- collection -------------------------------------------------------------------------
    def observe_active(self, _: CallbackOptions) -> Iterator[Observation]:
        for (method, scheme), count in self.active.copy().items():
            yield Observation(count, {c.METHOD: method, c.SCHEME: scheme})

    def observe_peak(self, _: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self.peak)

    def observe_route_active(self, _: CallbackOptions) -> Iterator[Observation]:
        yield from _per_route(self.route_active)

    def observe_route_peak(self, _: CallbackOptions) -> Iterator[Observation]:
        yield from _per_route(self.route_peak)

    def observe_streams(self, _: CallbackOptions) -> Iterator[Observation]:
        """Stream outcomes, counted from the stream-duration histogram: no extra hot-path work."""
        for snap in self.streams.snapshot(0):
            yield Observation(sum(snap.counts), snap.attributes)


def _per_route(counts: dict[tuple[str, str | None], int]) -> Iterator[Observation]:
    for (method, route), count in counts.copy().items():
        attributes = {c.METHOD: method}
        if route is not None:
            attributes[c.ROUTE] = route
        yield Observation(count, attributes)
