"""Publish an app's own numbers (queue sizes, jobs running, models loaded) as observable gauges.

    otel_llm_metrics.observe_gauge("app.queue.size", lambda: len(queue), unit="{job}")

The callback runs only at collection. It may return a number, or (value, attributes) pairs; an
exception is logged once and that collection skips the gauge, the others still report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from ..registry import DEFAULT_REGISTRY, Registry

logger = logging.getLogger(__name__)
Reading = float | int | list[tuple[float | int, dict[str, Any]]]


def observe_gauge(name: str, callback: Callable[[], Reading], *, unit: str = "1", description: str = "",
                  registry: Registry | None = None) -> None:
    failed = False

    def observe(_: CallbackOptions) -> Iterator[Observation]:
        nonlocal failed
        try:
            reading = callback()
        except Exception:
            if not failed:
                failed = True
                logger.warning("otel_llm_metrics: gauge %r callback raised; skipped this collection", name,
                               exc_info=True)
            return
        if isinstance(reading, (int, float)) and not isinstance(reading, bool):
            yield Observation(reading)
            return
        for value, attributes in reading or ():
            yield Observation(value, attributes)

    (registry or DEFAULT_REGISTRY).with_meter(
        lambda meter: meter.create_observable_gauge(name, callbacks=[observe], unit=unit, description=description))
