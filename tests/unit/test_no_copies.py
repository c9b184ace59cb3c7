"""No metric name reaches a reader from two scopes (issue 19: 14 names came twice, ours and
opentelemetry-instrumentation-system-metrics', so sum() doubled in Prometheus)."""

from __future__ import annotations

from collections import defaultdict

from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_llm_metrics import Registry, Telemetry, catalogue, load_settings


def _scopes_by_name(reader) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for resource_metrics in reader.get_metrics_data().resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found[metric.name].add(scope_metrics.scope.name)
    return found


def _beside_system_metrics(resources: str) -> dict[str, set[str]]:
    """One collection of ours (with these resource groups) and the real system-metrics instrumentation."""
    reader = InMemoryMetricReader()
    telemetry = Telemetry(load_settings(environ={}, metrics_exporters="none", resources=resources), Registry(),
                          [reader])
    instrumentor = SystemMetricsInstrumentor()
    instrumentor.instrument(meter_provider=telemetry.meter_provider)
    try:
        return _scopes_by_name(reader)
    finally:
        instrumentor.uninstrument()
        telemetry.shutdown()


def test_system_metrics_instrumentation_beside_ours_gives_one_copy_of_each_name():
    found = _beside_system_metrics("process,system")
    theirs = "opentelemetry.instrumentation.system_metrics"
    twice = {name: scopes for name, scopes in found.items() if len(scopes) > 1}
    assert not twice, twice
    ours = {spec.name for spec in (*catalogue.PROCESS_SPECS, *catalogue.SYSTEM_SPECS)}
    shared = {name for name, scopes in found.items() if name in ours}
    assert len(shared) >= 10 and all(found[name] == {catalogue.SCOPE_NAME} for name in shared)
    assert any(scopes == {theirs} for scopes in found.values()), "their other names stay (system.cpu.time, ...)"


def test_a_group_turned_off_leaves_their_copy_as_the_only_one():
    found = _beside_system_metrics("none")
    assert found.get("process.cpu.time") == {"opentelemetry.instrumentation.system_metrics"}
