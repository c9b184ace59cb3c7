"""Cost of resource metrics: one full collection (psutil included) and the event-loop lag monitor.

    .venv/bin/python benchmarks/bench_resources.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from otel_llm_metrics import Registry, Telemetry, load_settings  # noqa: E402
from otel_llm_metrics.resources import sampling  # noqa: E402


def collection_cost(groups: tuple[str, ...]) -> float:
    """Median seconds of one reader collection with a fresh psutil reading each time."""
    reader = InMemoryMetricReader()
    settings = load_settings(environ={}, metrics_exporters=("none",), resources=groups)
    telemetry = Telemetry(settings, Registry(), [reader])
    sampling.FRESH_FOR = 0.0  # every collection reads psutil again (normally shared for 0.25 s)
    times = []
    for _ in range(30):
        started = time.perf_counter()
        reader.get_metrics_data()
        times.append(time.perf_counter() - started)
    telemetry.shutdown()
    return statistics.median(times[5:])


def loop_monitor_cost(seconds: float = 5.0) -> tuple[float, float]:
    """CPU share of one core used by an idle event loop, without and with the lag monitor."""
    def run(with_monitor: bool) -> float:
        telemetry = Telemetry(load_settings(environ={}, metrics_exporters=("none",), resources=("none",),
                                            loop_lag_interval=0.5 if with_monitor else 0), Registry())

        async def idle() -> None:
            telemetry.ensure_serving()
            await asyncio.sleep(seconds)
            telemetry.loop_monitor.stop()
        started = time.process_time()
        asyncio.run(idle())
        used = time.process_time() - started
        telemetry.shutdown()
        return used / seconds

    return run(False), run(True)


def main() -> None:
    print("| what | cost |")
    print("|---|---:|")
    for groups in (("process",), ("process", "system")):
        print(f"| one collection, {' + '.join(groups)} (all instruments, fresh psutil reading) "
              f"| {collection_cost(groups) * 1000:.2f} ms |")
    without, with_monitor = loop_monitor_cost()
    extra = (with_monitor - without) * 100
    print(f"| event-loop lag monitor at 0.5 s, idle loop: extra CPU | {extra:.3f}% of a core |")


if __name__ == "__main__":
    main()
