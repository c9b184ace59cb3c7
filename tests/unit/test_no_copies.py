"""No metric name reaches a reader from two scopes (issue 19: 14 names came twice, ours and
opentelemetry-instrumentation-system-metrics', so sum() doubled in Prometheus)."""

from __future__ import annotations

from collections import defaultdict

import pytest
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


# -- other libraries' GenAI numbers (issue 26): a copy only where we measure the same calls ------------------------
BOTOCORE = "opentelemetry.instrumentation.botocore.bedrock-runtime"  # its meter: package name + "." + service
OPENAI_V2 = "opentelemetry.instrumentation.openai_v2"
UTIL_GENAI = "opentelemetry.util.genai.handler"  # shared by openai-v2, vertexai, anthropic, ... instrumentations


def _record_their_calls(meter_provider) -> None:
    """What botocore's Bedrock extension, openai-v2 and util-genai's handler record for one call each."""
    for scope, provider in ((BOTOCORE, "aws.bedrock"), (OPENAI_V2, "openai"), (UTIL_GENAI, "openai"),
                            (UTIL_GENAI, "gcp.vertex_ai")):
        meter = meter_provider.get_meter(scope)
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider}
        meter.create_histogram("gen_ai.client.operation.duration", unit="s").record(0.25, attributes)
        tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
        tokens.record(16, {**attributes, "gen_ai.token.type": "input"})
        tokens.record(7, {**attributes, "gen_ai.token.type": "output"})
    # OpenLIT times the calls it wraps under our served names; a model server's own instrumentation does not
    meter_provider.get_meter("openlit.otel.metrics").create_histogram("gen_ai.server.time_to_first_token").record(
        0.1, {"gen_ai.system": "openai"})
    meter_provider.get_meter("some.model_server").create_histogram("gen_ai.server.time_to_first_token").record(0.2)


def _their_points(reader) -> dict[tuple[str, str], dict[str, float]]:
    """(scope, name) -> provider -> summed values, for the GenAI metrics of scopes other than ours."""
    found: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name == catalogue.SCOPE_NAME:
                continue
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    provider = point.attributes.get("gen_ai.provider.name") or point.attributes.get("gen_ai.system")
                    sums = found[scope_metrics.scope.name, metric.name]
                    sums[str(provider)] = sums.get(str(provider), 0) + point.sum
    return found


def _assert_only_calls_we_measure_dropped(found: dict[tuple[str, str], dict[str, float]],
                                          bedrock_ours: bool = False) -> None:
    if bedrock_ours:  # our botocore instrumentor at work: theirs are copies of the calls it measures
        assert (BOTOCORE, "gen_ai.client.token.usage") not in found
        assert (BOTOCORE, "gen_ai.client.operation.duration") not in found
    else:
        assert found[BOTOCORE, "gen_ai.client.token.usage"] == {"aws.bedrock": 16 + 7}, "Bedrock: not measured by us"
        assert found[BOTOCORE, "gen_ai.client.operation.duration"] == {"aws.bedrock": 0.25}
    assert (OPENAI_V2, "gen_ai.client.operation.duration") not in found, "openai SDK over httpx: at the wire"
    assert (OPENAI_V2, "gen_ai.client.token.usage") not in found
    assert found[UTIL_GENAI, "gen_ai.client.token.usage"] == {"gcp.vertex_ai": 23}, "httpx providers only"
    assert ("openlit.otel.metrics", "gen_ai.server.time_to_first_token") not in found, "mislabelled client timings"
    assert found["some.model_server", "gen_ai.server.time_to_first_token"] == {"None": 0.2}


@pytest.mark.parametrize("bedrock_ours", [True, False], ids=["botocore-ours", "botocore-left-out"])
def test_the_views_keep_genai_numbers_of_calls_we_do_not_measure(monkeypatch, bedrock_ours):
    """Our own MeterProvider: its views drop openai-v2's copies before aggregation, and botocore's only while our
    botocore instrumentor measures the same calls."""
    if not bedrock_ours:
        monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "otel_llm_metrics_botocore")
    reader = InMemoryMetricReader()
    telemetry = Telemetry(load_settings(environ={}, metrics_exporters="none", resources="none"), Registry(),
                          [reader])
    try:
        _record_their_calls(telemetry.meter_provider)
        _assert_only_calls_we_measure_dropped(_their_points(reader), bedrock_ours)
    finally:
        telemetry.shutdown()


def test_the_views_alone_drop_whole_scopes_only():
    """Views cannot select points: a shared scope (util-genai's handler) is never dropped whole by one."""
    from opentelemetry.sdk.metrics import MeterProvider

    from otel_llm_metrics.frameworks import duplicate_dropping_views

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=duplicate_dropping_views())
    _record_their_calls(provider)
    found = _their_points(reader)
    provider.shutdown()
    assert found[BOTOCORE, "gen_ai.client.token.usage"] == {"aws.bedrock": 23}
    assert found[UTIL_GENAI, "gen_ai.client.token.usage"] == {"openai": 23, "gcp.vertex_ai": 23}
    assert (OPENAI_V2, "gen_ai.client.token.usage") not in found


def test_the_bridge_filter_keeps_genai_numbers_of_calls_we_do_not_measure():
    """A MeterProvider that is not ours (no views of ours): the bridge's filter alone decides, at collection."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from otel_llm_metrics.bridge import MetricsBridge
    from otel_llm_metrics.runtime import measuring, owned_names

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    settings = load_settings(environ={}, metrics_exporters="none")
    bridge = MetricsBridge(lambda: (), lambda: provider._sdk_config.resource,
                           InstrumentationScope(catalogue.SCOPE_NAME), owned_names(settings, False),
                           measuring(settings))
    bridge.attach(reader)
    _record_their_calls(provider)
    found = _their_points(reader)
    provider.shutdown()
    _assert_only_calls_we_measure_dropped(found, bedrock_ours=True)


def test_without_client_numbers_of_ours_every_genai_client_copy_stays():
    """OTEL_LLM_METRICS_UPSTREAM_CALLS=false and no tracing: theirs are the only client numbers, httpx ones too."""
    reader = InMemoryMetricReader()
    telemetry = Telemetry(load_settings(environ={}, metrics_exporters="none", resources="none",
                                        upstream_calls=False), Registry(), [reader])
    try:
        _record_their_calls(telemetry.meter_provider)
        found = _their_points(reader)
    finally:
        telemetry.shutdown()
    assert found[OPENAI_V2, "gen_ai.client.token.usage"] == {"openai": 23}
    assert found[UTIL_GENAI, "gen_ai.client.token.usage"] == {"openai": 23, "gcp.vertex_ai": 23}
    assert found[BOTOCORE, "gen_ai.client.token.usage"] == {"aws.bedrock": 23}
    assert found["some.model_server", "gen_ai.server.time_to_first_token"] == {"None": 0.2}
    assert ("openlit.otel.metrics", "gen_ai.server.time_to_first_token") not in found


def test_the_documented_table_names_every_copying_scope():
    from pathlib import Path

    from otel_llm_metrics.frameworks import COPYING_SCOPES, WIRE_PROVIDERS

    page = (Path(__file__).resolve().parents[2] / "docs" / "opentelemetry-setup.md").read_text()
    table = page[page.index("### Whose GenAI numbers are copies of ours"):]
    for row in COPYING_SCOPES:
        assert f"| `{row.scope}` |" in table, row.scope
    for provider in WIRE_PROVIDERS:
        assert f"`{provider}`" in table, provider
