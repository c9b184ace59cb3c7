"""The HTTP numbers one process keeps: histogram groups and in-flight gauges.

Everything here except ``span_requests`` is plain Python written by the event loop; ``observe_*``
turn it into OTel observations at collection time only. In-flight gauges are small objects that a
request looks up once when it starts and decrements directly when it ends: no second lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import OVERFLOW_ATTRIBUTES, HistogramGroup, SharedHistogramGroup

REQUEST_INSTRUMENTS = {"duration": c.REQUEST_DURATION, "request_size": c.REQUEST_BODY_SIZE,
                       "response_size": c.RESPONSE_BODY_SIZE}
STREAM_INSTRUMENTS = {"duration": c.STREAM_DURATION, "first_byte": c.STREAM_TIME_TO_FIRST_BYTE,
                      "chunks": c.STREAM_CHUNKS, "size": c.STREAM_BODY_SIZE}


def request_key(method: str, scheme: str, route: str | None, status: int | None, error_type: str | None,
                tenant: str | None = None) -> tuple:
    """A request series' attribute values, in the order of ``catalogue.HTTP_ATTRS``."""
    return (method, scheme, route, status, error_type, tenant)


def stream_key(method: str, route: str | None, outcome: str) -> tuple:
    """A stream series' attribute values, in the order of ``catalogue.STREAM_ATTRS``."""
    return (method, route, outcome)


class InFlight:
    """Requests in flight for one attribute set, and the most there have been at once."""

    __slots__ = ("attributes", "active", "peak")

    def __init__(self, attributes: dict) -> None:
        self.attributes = attributes
        self.active = 0
        self.peak = 0


class HttpStats:
    """In-flight gauges, the process-wide peak and the request/stream histogram groups."""

    def __init__(self, max_series: int = 2000) -> None:
        self.requests = HistogramGroup(REQUEST_INSTRUMENTS, max_series, without_extremes=("request_size",
                                                                                          "response_size"))
        # Server spans of frameworks we do not wrap end in whatever thread ends them (span processor).
        self.span_requests = SharedHistogramGroup({"duration": c.REQUEST_DURATION}, max_series)
        self.streams = HistogramGroup(STREAM_INSTRUMENTS, max_series)
        self.overhead = HistogramGroup({"request": c.UPSTREAM_OVERHEAD, "first_token": c.FIRST_TOKEN_OVERHEAD},
                                       max_series)
        self.max_series = max_series
        self.middleware_active = False  # set once a MetricsMiddleware records into these stats
        self.reset()

    def histogram_groups(self) -> tuple[HistogramGroup, ...]:
        return (self.requests, self.span_requests, self.streams, self.overhead)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {c.ACTIVE_REQUESTS: self.observe_active, c.ACTIVE_REQUESTS_PEAK: self.observe_peak,
                c.ROUTE_ACTIVE_REQUESTS: self.observe_route_active,
                c.ROUTE_ACTIVE_REQUESTS_PEAK: self.observe_route_peak, c.STREAMS: self.observe_streams}

    def reset(self) -> None:
        """Forget everything (a forked worker starts from zero, not from its parent's numbers)."""
        for group in self.histogram_groups():
            group.reset()
        self.active: dict[tuple[str, str], InFlight] = {}
        self.route_active: dict[tuple[str, str | None], InFlight] = {}
        self.in_flight = 0
        self.peak = 0

    # -- first sight of an attribute set (slow path) --------------------------------------------
    def new_active(self, key: tuple[str, str]) -> InFlight:
        return self._new(self.active, key, {c.METHOD: key[0], c.SCHEME: key[1]})

    def new_route_active(self, key: tuple[str, str | None]) -> InFlight:
        attributes = {c.METHOD: key[0]}
        if key[1] is not None:
            attributes[c.ROUTE] = key[1]
        return self._new(self.route_active, key, attributes)

    def _new(self, table: dict, key: tuple, attributes: dict) -> InFlight:
        if len(table) >= self.max_series:
            key, attributes = ("__overflow__",), dict(OVERFLOW_ATTRIBUTES)
            if key in table:
                return table[key]
        gauge = table[key] = InFlight(attributes)
        return gauge

    # -- collection -------------------------------------------------------------------------
    def observe_active(self, _: CallbackOptions) -> Iterator[Observation]:
        for gauge in list(self.active.values()):
            yield Observation(gauge.active, gauge.attributes)

    def observe_peak(self, _: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self.peak)

    def observe_route_active(self, _: CallbackOptions) -> Iterator[Observation]:
        for gauge in list(self.route_active.values()):
            yield Observation(gauge.active, gauge.attributes)

    def observe_route_peak(self, _: CallbackOptions) -> Iterator[Observation]:
        for gauge in list(self.route_active.values()):
            yield Observation(gauge.peak, gauge.attributes)

    def observe_streams(self, _: CallbackOptions) -> Iterator[Observation]:
        """Stream outcomes, counted from the stream-duration histogram: no extra hot-path work."""
        for snap in self.streams.snapshot("duration"):
            yield Observation(sum(snap.counts), snap.attributes)
