from __future__ import annotations

import signal

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_llm_metrics import Registry, Telemetry, load_settings

# A suite started in the background (`make test &`, nohup, some CI runners) inherits SIGINT *ignored*, and so
# would every server, demo and CLI it starts: the tests that stop them with Ctrl-C would wait in vain (found
# when make test ran in the background here). Handled, not ignored, SIGINT is back to its default in children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Longest first: with pytest-xdist (noxfile.py) the last tests handed out decide when the run ends, so the modules
# whose tests take 10 to 40 s each (multi-worker servers killed and replaced, dead collectors, Prometheus and
# Grafana) go first, then the rest of the integration tests, and the many short unit tests fill the tail.
SLOWEST_FIRST = ("test_workers", "test_otlp_merged", "test_tracing", "test_shutdown", "test_zero_code_servers",
                 "test_alert_end_to_end", "test_grafana", "test_cli_snapshot", "test_cli_live", "test_llm",
                 "test_upstream_calls", "test_pools", "test_mcp")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        if module in SLOWEST_FIRST:
            return SLOWEST_FIRST.index(module)
        return len(SLOWEST_FIRST) + (0 if "integration" in item.path.parts else 1)

    items.sort(key=rank)  # stable: each module's own order is kept


class MetricsView:
    """The points an in-memory reader collected, by instrument name."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.by_name: dict[str, list] = {}
        self.resources = []
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            self.resources.append(dict(rm.resource.attributes))
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    self.by_name.setdefault(metric.name, []).extend(metric.data.data_points)

    def points(self, name: str) -> list:
        return self.by_name.get(name, [])

    def one(self, name: str, **attributes) -> object:
        """The single point of ``name`` whose attributes include ``attributes`` (dots as __)."""
        wanted = {k.replace("__", "."): v for k, v in attributes.items()}
        found = [p for p in self.points(name) if all(p.attributes.get(k) == v for k, v in wanted.items())]
        everything = [dict(p.attributes) for p in self.points(name)]
        assert len(found) == 1, f"{name} {wanted}: {len(found)} points in {everything}"
        return found[0]

    def total_count(self, name: str) -> int:
        return sum(p.count for p in self.points(name))


@pytest.fixture
def make_telemetry():
    created: list[Telemetry] = []

    def make(temporality: dict | None = None, **settings) -> Telemetry:
        reader = InMemoryMetricReader(preferred_temporality=temporality or {})
        settings.setdefault("metrics_exporters", ("none",))
        telemetry = Telemetry(load_settings(environ={}, **settings), Registry(), [reader])
        telemetry.collect = lambda: MetricsView(reader)  # type: ignore[attr-defined]
        created.append(telemetry)
        return telemetry

    yield make
    for telemetry in created:
        telemetry.shutdown()
