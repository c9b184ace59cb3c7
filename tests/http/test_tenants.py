"""tenant.id: from a header, W3C baggage, code (a resolver, request.state, a ``tenant()`` block) or a keyed hash of
the API key; capped like model names; on served counts, tokens and cost, and inherited by the calls made."""

from __future__ import annotations

import importlib.util
import json
import logging

import httpx2
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

import otel_llm_metrics
from otel_llm_metrics.client import instrumentors
from tests.asgi_client import call
from tests.client.test_wire import _transport
from tests.llm.test_transcripts import HERE

ANSWER = (HERE / "openai_chat.json").read_bytes()
REQUEST = json.dumps({"model": "gpt-4o", "messages": []}).encode()
KEY = "sk-live-0123456789abcdef0123456789abcdef"


def _gateway(set_tenant=None, call_upstream: bool = True) -> Starlette:
    """Serves the OpenAI transcript, after calling an upstream (in-process transport) for it."""
    async def chat(request):
        await request.body()
        if set_tenant is not None:
            set_tenant(request)
        if call_upstream:
            async with httpx2.AsyncClient(transport=_transport(httpx2, [ANSWER])) as client:
                await client.post("http://llm.test/v1/chat/completions", content=REQUEST)
        return Response(ANSWER, media_type="application/json")
    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture
def tenants(make_telemetry):
    made = []

    def make(**settings):
        telemetry = make_telemetry(**settings)
        telemetry.measure_upstream_calls()
        made.append(telemetry)
        return telemetry
    yield make
    instrumentors.uninstall()


def _tenants_of(view, name: str) -> dict:
    found: dict = {}
    for point in view.points(name):
        tenant = point.attributes.get("tenant.id")
        found[tenant] = found.get(tenant, 0) + (point.count if hasattr(point, "count") else point.value)
    return found


def _serve(run, telemetry, app, headers=()) -> None:
    result = run(call(telemetry.instrument(app), "POST", "/v1/chat/completions", body=REQUEST, headers=headers))
    assert result.status == 200 and result.body == ANSWER


def test_a_header_tenant_is_on_served_counts_tokens_cost_and_the_calls_made(run, tenants):
    telemetry = tenants(tenant_header="X-Tenant-ID")
    _serve(run, telemetry, _gateway(), headers=[(b"x-tenant-id", b"acme")])
    telemetry.registry.gen_ai.prices.wait_loaded()
    view = telemetry.collect()
    priced = importlib.util.find_spec("genai_prices") is not None  # genai-prices needs Python 3.11
    names = ("http.server.request.duration", "gen_ai.server.token.usage", "gen_ai.client.token.usage",
             *(("gen_ai.server.cost", "gen_ai.client.cost") if priced else
               ("gen_ai.server.cost.unpriced.calls", "gen_ai.client.cost.unpriced.calls")))
    for name in names:
        assert set(_tenants_of(view, name)) == {"acme"}, name
    assert _tenants_of(view, "http.server.request.duration") == {"acme": 1}


def test_a_baggage_entry_names_the_tenant(run, tenants):
    telemetry = tenants(tenant_baggage="tenant.id")
    _serve(run, telemetry, _gateway(), headers=[(b"baggage", b"other=1,tenant.id=team%20blue;ttl=3")])
    view = telemetry.collect()
    assert _tenants_of(view, "http.server.request.duration") == {"team blue": 1}
    assert set(_tenants_of(view, "gen_ai.client.token.usage")) == {"team blue"}


def test_request_state_set_by_the_app_is_read_by_the_resolver_for_the_request_and_its_calls(run, tenants):
    telemetry = tenants(tenant_from="otel_llm_metrics.llm.tenant:from_request_state")

    def decide(request):
        request.state.tenant_id = "from-dependency"
    _serve(run, telemetry, _gateway(decide))
    view = telemetry.collect()
    assert _tenants_of(view, "http.server.request.duration") == {"from-dependency": 1}
    assert set(_tenants_of(view, "gen_ai.client.token.usage")) == {"from-dependency"}


def test_a_tenant_block_in_code_needs_no_setting(run, tenants):
    telemetry = tenants()

    def decide(request):
        otel_llm_metrics.tenant("coded").__enter__()  # as a handler's `with` would, around the rest of its work
    _serve(run, telemetry, _gateway(decide))
    view = telemetry.collect()
    assert _tenants_of(view, "http.server.request.duration") == {"coded": 1}
    assert set(_tenants_of(view, "gen_ai.client.token.usage")) == {"coded"}


def test_calls_made_outside_any_request_take_the_enclosing_block(tenants):
    telemetry = tenants()
    with otel_llm_metrics.tenant("batch-job"), httpx2.Client(transport=_transport(httpx2, [ANSWER])) as client:
        client.post("http://llm.test/v1/chat/completions", content=REQUEST)
    with httpx2.Client(transport=_transport(httpx2, [ANSWER])) as client:
        client.post("http://llm.test/v1/chat/completions", content=REQUEST)
    view = telemetry.collect()
    assert set(_tenants_of(view, "gen_ai.client.token.usage")) == {"batch-job", None}, "the block ended: no tenant"


def test_ten_thousand_tenants_stay_bounded_and_every_request_counts(run, tenants):
    telemetry = tenants(tenant_header="x-tenant-id", max_tenants=50)
    app = telemetry.instrument(_gateway(call_upstream=False))

    async def many():
        for index in range(10_000):
            await call(app, "POST", "/v1/chat/completions", body=REQUEST,
                       headers=[(b"x-tenant-id", f"tenant-{index}".encode())])
    run(many())
    view = telemetry.collect()
    counts = _tenants_of(view, "http.server.request.duration")
    assert sum(counts.values()) == 10_000
    assert len(counts) == 51 and counts["_OTHER"] == 10_000 - 50
    assert len(_tenants_of(view, "gen_ai.server.token.usage")) == 51


def test_api_keys_are_only_ever_a_keyed_hash(run, tenants, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "a-secret-of-the-operators-choosing"
    telemetry = tenants(tenant_api_key_secret=secret, traces_exporter="console", app_metrics_path="/metrics")
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    _serve(run, telemetry, _gateway(), headers=[(b"authorization", f"Bearer {KEY}".encode())])
    _serve(run, telemetry, _gateway(), headers=[(b"x-api-key", KEY.encode())])
    view = telemetry.collect()
    (hashed,) = _tenants_of(view, "http.server.request.duration")
    assert hashed.startswith("key-") and len(hashed) == 16
    assert _tenants_of(view, "http.server.request.duration") == {hashed: 2}, "one key, one tenant, either header"
    assert KEY not in hashed and hashed[4:] not in KEY and secret not in hashed
    other = tenants(tenant_api_key_secret="another-secret-entirely-0000")
    _serve(run, other, _gateway(), headers=[(b"authorization", f"Bearer {KEY}".encode())])
    assert set(_tenants_of(other.collect(), "http.server.request.duration")) != {hashed}, "keyed: no lookup table"
    page = run(call(telemetry.instrument(_gateway()), "GET", "/metrics")).body.decode()
    assert f'tenant_id="{hashed}"' in page
    assert KEY not in page and KEY[3:20] not in page
    for span in spans.get_finished_spans():
        assert KEY not in repr(dict(span.attributes)) and KEY not in repr(span.events), span.name
    assert {span.attributes.get("tenant.id") for span in spans.get_finished_spans()
            if span.kind.name == "SERVER"} == {hashed}, "the server span names the tenant too"
    assert secret not in repr(telemetry.settings)
    assert not [record for record in caplog.records if KEY in record.getMessage() or secret in record.getMessage()]


def test_a_resolver_that_raises_never_reaches_the_app(run, tenants, caplog):
    def broken(scope):
        raise RuntimeError("boom")
    telemetry = tenants(tenant_from=broken)
    app = telemetry.instrument(_gateway())
    for _ in range(2):
        assert run(call(app, "POST", "/v1/chat/completions", body=REQUEST)).body == ANSWER
    assert _tenants_of(telemetry.collect(), "http.server.request.duration") == {None: 2}
    assert sum("tenant resolver" in record.getMessage() for record in caplog.records) == 1
