"""registry.py and the stats areas: every instrument has a home, every key builder matches its spec."""

from __future__ import annotations

import inspect

import pytest

from otel_llm_metrics import Registry
from otel_llm_metrics import catalogue as c
from otel_llm_metrics.http.stats import request_key, stream_key
from otel_llm_metrics.limiter_stats import limiter_key
from otel_llm_metrics.llm.stats import (
    attempt_key,
    client_cost_key,
    client_key,
    client_token_key,
    cost_key,
    operation_key,
    rate_limit_key,
    response_key,
    server_token_key,
)
from otel_llm_metrics.resources.cache_stats import cache_key
from otel_llm_metrics.resources.pool_stats import pool_key

# Each key builder, the instruments whose series it addresses, and which attribute each of its
# parameters stands for: written out here, independently of the code's order.
KEY_BUILDERS = [
    (request_key, (c.REQUEST_DURATION, c.REQUEST_BODY_SIZE, c.RESPONSE_BODY_SIZE),
     {"method": c.METHOD, "scheme": c.SCHEME, "route": c.ROUTE, "status": c.STATUS, "error_type": c.ERROR_TYPE,
      "tenant": c.TENANT}),
    (stream_key, (c.STREAM_DURATION, c.STREAM_TIME_TO_FIRST_BYTE, c.STREAM_CHUNKS, c.STREAM_BODY_SIZE),
     {"method": c.METHOD, "route": c.ROUTE, "outcome": c.STREAM_OUTCOME}),
    (operation_key, (c.GEN_AI_SERVER_DURATION, c.GEN_AI_SERVER_TTFT, c.GEN_AI_SERVER_TPOT),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "response_model": c.GEN_AI_RESPONSE_MODEL, "error_type": c.ERROR_TYPE}),
    (server_token_key, (c.GEN_AI_SERVER_TOKENS,),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "response_model": c.GEN_AI_RESPONSE_MODEL, "token_type": c.GEN_AI_TOKEN_TYPE, "estimated": c.GEN_AI_ESTIMATED,
      "tenant": c.TENANT}),
    (response_key, (c.GEN_AI_SERVER_RESPONSES,),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "response_model": c.GEN_AI_RESPONSE_MODEL, "finish_reason": c.GEN_AI_FINISH_REASON}),
    (client_key, (c.GEN_AI_CLIENT_DURATION, c.GEN_AI_CLIENT_TTFC, c.GEN_AI_CLIENT_TPOC),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "response_model": c.GEN_AI_RESPONSE_MODEL, "address": c.SERVER_ADDRESS, "port": c.SERVER_PORT,
      "error_type": c.ERROR_TYPE}),
    (client_token_key, (c.GEN_AI_CLIENT_TOKENS,),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "response_model": c.GEN_AI_RESPONSE_MODEL, "address": c.SERVER_ADDRESS, "port": c.SERVER_PORT,
      "token_type": c.GEN_AI_TOKEN_TYPE, "estimated": c.GEN_AI_ESTIMATED, "tenant": c.TENANT}),
    (cost_key, (c.GEN_AI_SERVER_COST, c.GEN_AI_SERVER_UNPRICED_CALLS),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "response_model": c.GEN_AI_RESPONSE_MODEL, "tenant": c.TENANT}),
    (client_cost_key, (c.GEN_AI_CLIENT_COST, c.GEN_AI_CLIENT_UNPRICED_CALLS),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "response_model": c.GEN_AI_RESPONSE_MODEL, "address": c.SERVER_ADDRESS, "tenant": c.TENANT}),
    (attempt_key, (c.GEN_AI_CLIENT_ATTEMPTS,),
     {"operation": c.GEN_AI_OPERATION, "provider": c.GEN_AI_PROVIDER, "request_model": c.GEN_AI_REQUEST_MODEL,
      "address": c.SERVER_ADDRESS, "port": c.SERVER_PORT, "error_type": c.ERROR_TYPE}),
    (rate_limit_key, (c.GEN_AI_CLIENT_RATE_LIMIT_REMAINING, c.GEN_AI_CLIENT_RATE_LIMIT),
     {"provider": c.GEN_AI_PROVIDER, "address": c.SERVER_ADDRESS, "port": c.SERVER_PORT,
      "request_model": c.GEN_AI_REQUEST_MODEL, "resource": c.RATE_LIMIT_RESOURCE}),
    (limiter_key, (c.LIMITER_WAIT_TIME,), {"name": c.LIMITER_NAME}),
    (pool_key, (c.POOL_WAIT_TIME, c.POOL_USE_TIME), {"name": c.POOL_NAME}),
    (cache_key, (c.CACHE_DURATION,), {"name": c.CACHE_NAME, "operation": c.CACHE_OPERATION}),
]


@pytest.mark.parametrize(("build", "specs", "meaning"), KEY_BUILDERS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_key_builder_puts_each_value_under_its_attribute(build, specs, meaning):
    assert list(inspect.signature(build).parameters) == list(meaning), "the table above covers every parameter"
    key = build(**{parameter: f"<{parameter}>" for parameter in meaning})
    for spec in specs:
        placed = dict(zip(spec.attributes, key, strict=True))
        assert placed == {attribute: f"<{parameter}>" for parameter, attribute in meaning.items()}, spec.name


def test_every_group_and_observer_belongs_to_a_catalogue_instrument():
    registry = Registry()
    histograms = {spec.name for group in registry.histogram_groups() for spec in group.instruments.values()}
    observed = {spec.name for area in registry.areas for spec in area.observers()}
    catalogue = {spec.name for spec in c.ALL}
    assert histograms <= catalogue and observed <= catalogue
    resources = {spec.name for spec in (*c.PROCESS_SPECS, *c.SYSTEM_SPECS, *c.GPU_SPECS)}  # registered by runtime
    assert histograms | observed | resources == catalogue, "every catalogue instrument has one home"
    assert not histograms & observed


def test_under_the_opt_in_the_calls_made_have_the_latest_names_and_only_those():
    registry = Registry()
    registry.gen_ai.configure(max_series=10, max_model_names=10, latest_experimental=True)
    histograms = {spec.name for group in registry.histogram_groups() for spec in group.instruments.values()}
    observed = {spec.name for area in registry.areas for spec in area.observers()}
    published = {spec.name for spec in c.published(latest_experimental=True)}
    assert histograms | observed <= published
    assert {spec.name for spec in c.LATEST_EXPERIMENTAL} <= histograms | observed
    assert not {spec.name for spec in c.REPLACED_UNDER_OPT_IN} & (histograms | observed)


def test_configure_reaches_every_group_and_reset_forgets_every_area():
    registry = Registry()
    registry.configure(max_series=7, max_model_names=3)
    assert {group.max_series for group in registry.histogram_groups()} == {7} == {registry.gen_ai.responses.max_series}
    assert registry.gen_ai.finish_reasons.max_values == 3
    assert registry.http.max_series == 7 and registry.gen_ai.models.max_values == 3
    registry.http.requests.get(request_key("GET", "http", "/x", 200, None)).duration.record(0.1)
    registry.caches.get("c").hit()
    registry.loop_lag.lag.get(()).lag.record(0.01)
    registry.reset()
    assert all(not group.series for group in registry.histogram_groups())
    assert registry.caches.get("c").hits == 0


def test_a_gauge_observed_before_any_telemetry_reads_the_registry_is_reported_once_one_does():
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_llm_metrics import Telemetry, load_settings, observe_gauge

    registry = Registry()
    observe_gauge("app.queue.size", lambda: 4, registry=registry)  # at import time, say
    reader = InMemoryMetricReader()
    telemetry = Telemetry(load_settings({}, metrics_exporters="none", resources="none"), registry, [reader])
    observe_gauge("app.jobs", lambda: 2, registry=registry)  # after start-up: created at once
    values = {m.name: m.data.data_points[0].value for rm in reader.get_metrics_data().resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics if m.name.startswith("app.")}
    telemetry.shutdown()
    assert values == {"app.queue.size": 4, "app.jobs": 2}
