"""The LLM calls an app makes, measured at its HTTP client: the official SDKs (openai, anthropic, google-genai),
sync and async, streamed and not, against a local provider that answers with the wire transcripts.

The numbers must be the transcripts' truth: tokens by type, models, first-chunk times; a 429 the SDK
retried is 2 attempts and 1 operation; the provider's rate-limit headers become gauges, 0 included.
"""

from __future__ import annotations

import json

import anthropic
import anyio
import openai
import pytest
from google import genai
from google.genai import types

from otel_llm_metrics.client import instrumentors
from otel_llm_metrics.client.call import flush_pending
from tests import local_http
from tests.integration.test_grafana import CALLS_MADE, COST, assert_all_return_data, queries_of
from tests.integration.upstream import Upstream, transcript
from tests.llm.expectations import assert_tokens
from tests.test_dashboards import dashboards

pytestmark = pytest.mark.integration
DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
TTFC, TPOC = "gen_ai.client.operation.time_to_first_chunk", "gen_ai.client.operation.time_per_output_chunk"


@pytest.fixture(scope="module")
def upstream():
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture
def wire(make_telemetry):
    """A Telemetry measuring the calls this process makes (as setup() and zero code do)."""
    telemetry = make_telemetry()
    assert set(telemetry.measure_upstream_calls()) == {"httpx", "httpx2", "aiohttp", "botocore"}
    yield telemetry
    instrumentors.uninstall()


def _openai(upstream, use_async: bool, retries: int = 0):
    kind = openai.AsyncOpenAI if use_async else openai.OpenAI
    return kind(base_url=upstream.url + "/v1", api_key="test-key", max_retries=retries)


def _run(use_async: bool, make):
    """``make()`` returns a coroutine (async SDK) or the result (sync SDK)."""
    if not use_async:
        return make()

    async def main():
        return await make()
    return anyio.run(main)


def _assert_one_call(view, stem: str, truth: dict, port: int, streamed: bool) -> None:
    (duration,) = view.points(DURATION)
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": truth["operation"], "gen_ai.provider.name": truth["provider"],
        "gen_ai.request.model": stem, "gen_ai.response.model": truth["model"],
        "server.address": "127.0.0.1", "server.port": port}
    (attempt,) = view.points(ATTEMPTS)
    assert attempt.value == 1 and "error.type" not in attempt.attributes
    assert_tokens(view.points(TOKENS), truth)
    first_chunks = sum(point.count for point in view.points(TTFC))
    assert first_chunks == (1 if streamed else 0)
    assert sum(point.count for point in view.points(TPOC)) <= max(0, truth["deltas"] - 1)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("stem", "stream"), [
    ("openai_chat", False), ("openai_chat_stream_usage", True), ("openai_chat_stream_no_usage", True),
])
def test_openai_chat_completions(upstream, wire, use_async, stem, stream):
    client = _openai(upstream, use_async)
    _, truth, _ = transcript(stem)
    extra = {"stream_options": {"include_usage": True}} if stem == "openai_chat_stream_usage" else {}

    def make():
        if not use_async:
            answer = client.chat.completions.create(model=stem, messages=[{"role": "user", "content": "hi"}],
                                                    stream=stream, **extra)
            return list(answer) if stream else [answer]

        async def call():
            answer = await client.chat.completions.create(model=stem, messages=[{"role": "user", "content": "hi"}],
                                                          stream=stream, **extra)
            return [chunk async for chunk in answer] if stream else [answer]
        return call()

    answers = _run(use_async, make)
    assert answers[-1].model == truth["model"] or answers[0].model == truth["model"], "the SDK read the transcript"
    _assert_one_call(wire.collect(), stem, truth, upstream.port, stream)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("stem", "stream"), [("openai_responses", False), ("openai_responses_stream", True)])
def test_openai_responses(upstream, wire, use_async, stem, stream):
    client = _openai(upstream, use_async)
    _, truth, _ = transcript(stem)

    def make():
        if not use_async:
            answer = client.responses.create(model=stem, input="hi", stream=stream)
            return list(answer) if stream else [answer]

        async def call():
            answer = await client.responses.create(model=stem, input="hi", stream=stream)
            return [event async for event in answer] if stream else [answer]
        return call()

    assert _run(use_async, make)
    _assert_one_call(wire.collect(), stem, truth, upstream.port, stream)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("stem", "stream"), [("anthropic_messages", False), ("anthropic_messages_stream", True)])
def test_anthropic_messages(upstream, wire, use_async, stem, stream):
    kind = anthropic.AsyncAnthropic if use_async else anthropic.Anthropic
    client = kind(base_url=upstream.url, api_key="test-key", max_retries=0)
    _, truth, _ = transcript(stem)
    arguments = {"model": stem, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], "stream": stream}

    def make():
        if not use_async:
            answer = client.messages.create(**arguments)
            return list(answer) if stream else [answer]

        async def call():
            answer = await client.messages.create(**arguments)
            return [event async for event in answer] if stream else [answer]
        return call()

    assert _run(use_async, make)
    view = wire.collect()
    _assert_one_call(view, stem, truth, upstream.port, stream)
    remaining = {p.attributes["gen_ai.rate_limit.resource"]: p.value
                 for p in view.points("gen_ai.client.rate_limit.remaining")}
    assert remaining == {"requests": 49, "input_tokens": 0}, "Anthropic's headers, a 0 kept as a value"
    (limit,) = view.points("gen_ai.client.rate_limit.limit")
    assert limit.value == 50 and limit.attributes["gen_ai.request.model"] == stem


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("stem", "stream"), [("gemini_generate", False), ("gemini_stream", True)])
def test_google_genai(upstream, wire, use_async, stem, stream):
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(
        base_url=upstream.url, retry_options=types.HttpRetryOptions(attempts=1)))
    _, truth, _ = transcript(stem)
    models = client.aio.models if use_async else client.models

    def make():
        if not use_async:
            return list(models.generate_content_stream(model=stem, contents="hi")) if stream else [
                models.generate_content(model=stem, contents="hi")]

        async def call():
            if stream:
                return [chunk async for chunk in await models.generate_content_stream(model=stem, contents="hi")]
            return [await models.generate_content(model=stem, contents="hi")]
        return call()

    assert _run(use_async, make)[-1].model_version == truth["model"]
    _assert_one_call(wire.collect(), stem, truth, upstream.port, stream)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_429_the_sdk_retried_is_two_attempts_one_operation_and_the_limits_are_gauges(upstream, wire, use_async):
    model = f"flaky-1-{'async' if use_async else 'sync'}"
    client = _openai(upstream, use_async, retries=2)

    def make():
        return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])

    assert _run(use_async, make).model == transcript("openai_chat")[1]["model"]
    assert upstream.calls[model] == 2
    view = wire.collect()
    attempts = {p.attributes.get("error.type"): p.value for p in view.points(ATTEMPTS)}
    assert attempts == {"429": 1, None: 1}
    (operation,) = view.points(DURATION)
    assert operation.count == 1 and "error.type" not in operation.attributes
    assert operation.attributes["gen_ai.request.model"] == model
    remaining = {p.attributes["gen_ai.rate_limit.resource"]: p.value
                 for p in view.points("gen_ai.client.rate_limit.remaining")}
    assert remaining == {"requests": 0, "tokens": 29000}, "a 0 is a value"
    limits = {p.attributes["gen_ai.rate_limit.resource"]: p.value
              for p in view.points("gen_ai.client.rate_limit.limit")}
    assert limits == {"requests": 500, "tokens": 30000}
    (retry_after,) = view.points("gen_ai.client.retry_after")
    assert retry_after.count == 1 and retry_after.sum == 0


def test_a_call_that_fails_after_its_retries_is_one_failed_operation(upstream, wire):
    client = _openai(upstream, use_async=False, retries=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="flaky-5-x", messages=[{"role": "user", "content": "hi"}])
    assert upstream.calls["flaky-5-x"] == 2
    flush_pending()  # the SDK call's end recorded it already: the last push finds nothing left
    view = wire.collect()
    (operation,) = view.points(DURATION)
    assert operation.count == 1 and operation.attributes["error.type"] == "429"
    assert {p.attributes.get("error.type"): p.value for p in view.points(ATTEMPTS)} == {"429": 2}


def test_other_calls_are_left_alone(upstream, wire):
    import httpx2

    with httpx2.Client(base_url=upstream.url) as client:
        client.get("/v1/models")
        client.post("/v1/files", content=b"{}")
    view = wire.collect()
    assert not view.points(ATTEMPTS) and not view.points(DURATION)


def test_the_apps_own_share_is_its_overhead(upstream, wire, monkeypatch):
    """A relay that works 50 ms before a 200 ms upstream call: its overhead is the 50 ms, not the 250."""
    import httpx2
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.asgi_client import call

    monkeypatch.setattr(upstream, "delay", 0.2)
    client = httpx2.AsyncClient()  # one per app, as apps keep them (making one costs an SSL context: ~30 ms)

    async def ask(request):
        await anyio.sleep(0.05)  # the app's own work: retrieval, prompt building
        answer = await client.post(upstream.url + "/v1/chat/completions", json={"model": "openai_chat"})
        return JSONResponse({"answer": answer.json()["choices"][0]["message"]["content"]})

    app = wire.instrument(Starlette(routes=[Route("/ask", ask, methods=["POST"])]))

    async def five_questions():
        async with client:
            return [(await call(app, "POST", "/ask")).status for _ in range(5)]
    assert anyio.run(five_questions) == [200] * 5
    view = wire.collect()
    overhead = view.one("http.server.request.upstream_overhead", http__route="/ask")
    served = view.one("http.server.request.duration", http__route="/ask")
    assert overhead.count == served.count == 5
    assert served.sum / served.count >= 0.25
    assert 0.045 <= overhead.sum / overhead.count <= 0.15, overhead.sum / overhead.count
    p50_bucket = next(i for i, total in enumerate(_cumulative(overhead.bucket_counts)) if total >= 3)
    assert overhead.explicit_bounds[p50_bucket - 1] < 0.06 <= overhead.explicit_bounds[p50_bucket], "p50 ~ 50 ms"


def test_a_relayed_stream_shows_what_the_relay_adds_to_the_first_token(upstream, wire):
    import httpx2
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from tests.asgi_client import call

    client = httpx2.AsyncClient()

    async def relay(request):
        async def pieces():
            await anyio.sleep(0.03)  # the relay's own work before it calls: a lookup, a policy check
            async with client.stream("POST", upstream.url + "/v1/chat/completions",
                                     json={"model": "openai_chat_stream_usage", "stream": True}) as answer:
                async for chunk in answer.aiter_raw():
                    yield chunk
        return StreamingResponse(pieces(), media_type="text/event-stream")

    app = wire.instrument(Starlette(routes=[Route("/v1/chat/completions", relay, methods=["POST"])]))
    async def three_streams():
        async with client:
            return [await call(app, "POST", "/v1/chat/completions", b'{"model": "relay", "stream": true}')
                    for _ in range(3)]
    for result in anyio.run(three_streams):
        assert result.status == 200 and b"[DONE]" in result.body
    view = wire.collect()
    added = view.one("http.server.request.first_token_overhead", http__route="/v1/chat/completions")
    assert added.count == 3 and 0.025 <= added.sum / added.count <= 0.1, added.sum / added.count
    served = view.one("gen_ai.server.request.duration")
    made = view.one(DURATION)
    assert served.count == made.count == 3, "both directions of the relay, measured apart"


def _usd(truth: dict) -> float:
    """genai-prices' own price of a transcript's usage (provider by API shape: openai)."""
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=truth["input"], cache_read_tokens=truth["cache_read"] or 0,
                  cache_write_tokens=truth["cache_creation"] or 0, output_tokens=truth["output"],
                  output_reasoning_tokens=truth["reasoning"] or 0)
    return float(calc_price(usage, truth["model"], provider_id="openai").total_price)


def _cumulative(counts) -> list[int]:
    total, out = 0, []
    for count in counts:
        total += count
        out.append(total)
    return out


def test_a_rag_app_under_zero_code_has_its_upstream_numbers_exact_in_promql(upstream, prometheus, monkeypatch):
    """The app of the issue: FastAPI, the openai SDK, opentelemetry-instrument uvicorn, the embedded endpoint."""
    import subprocess

    import httpx

    from otel_llm_metrics.catalogue import CALLS_MADE_SPECS, COST_SPECS
    from tests.integration.servers import AppServer, require_binary, wait_for

    monkeypatch.setattr(upstream, "event_gap", 0.005)  # a stream's chunks arrive apart, as a model generates
    env = {"UPSTREAM_URL": upstream.url, "OTEL_LLM_METRICS_TENANT_HEADER": "x-tenant-id"}
    app = AppServer("tests.integration.rag_app:app", env=env).wait_ready()
    try:
        prometheus.add_target(f"127.0.0.1:{app.metrics_port}")
        plain, streamed = 7, 5
        with httpx.Client(base_url=app.url, timeout=10, headers={"x-tenant-id": "acme"}) as client:
            for i in range(plain + streamed):
                assert client.post("/ask", params={"stream": i >= plain}).status_code == 200
        job = f'instance="127.0.0.1:{app.metrics_port}"'
        truth_plain, truth_streamed = transcript("openai_chat")[1], transcript("openai_chat_stream_usage")[1]
        prometheus.wait_value(f'sum(http_server_request_duration_seconds_count{{{job},http_route="/ask"}})',
                              plain + streamed)
        prometheus.wait_value(f"sum(gen_ai_client_operation_duration_seconds_count{{{job}}})", plain + streamed)
        for model, calls in (("openai_chat", plain), ("openai_chat_stream_usage", streamed)):
            prometheus.wait_value(f'sum(gen_ai_client_attempts_total{{{job},gen_ai_request_model="{model}"}})', calls)
        input_tokens = plain * truth_plain["input"] + streamed * truth_streamed["input"]
        output_tokens = plain * truth_plain["output"] + streamed * truth_streamed["output"]
        prometheus.wait_value(f'sum(gen_ai_client_token_usage_sum{{{job},gen_ai_token_type="input"}})', input_tokens)
        prometheus.wait_value(f'sum(gen_ai_client_token_usage_sum{{{job},gen_ai_token_type="output"}})',
                              output_tokens)
        prometheus.wait_value(f"sum(gen_ai_client_operation_time_to_first_chunk_seconds_count{{{job}}})", streamed)
        models = {r["metric"]["gen_ai_response_model"] for r in prometheus.query(
            f"gen_ai_client_operation_duration_seconds_count{{{job}}}")}
        assert models == {truth_plain["model"], truth_streamed["model"]}
        prometheus.wait_value(f'sum(http_server_request_upstream_overhead_seconds_count{{{job},http_route="/ask"}})',
                              plain + streamed)

        # A 429 the SDK retries (the provider's rate-limit headers come with the answer) and a relayed stream:
        # then every query of the upstream dashboard has data, as test_grafana checks the others with the demo.
        with httpx.Client(base_url=app.url, timeout=10, headers={"x-tenant-id": "acme"}) as client:
            assert client.post("/ask", params={"model": "flaky-1-rag"}).status_code == 200
            relayed = client.post("/v1/chat/completions", json={"model": "openai_chat_stream_usage", "stream": True})
            assert relayed.status_code == 200 and b"[DONE]" in relayed.content
            # deepseek-reasoner answering an OpenAI-shaped call to an unknown host: no price, both directions
            unpriced = client.post("/v1/chat/completions", json={"model": "openai_chat_stream_quirks", "stream": True})
            assert unpriced.status_code == 200
        prometheus.wait_value(f'sum(gen_ai_client_attempts_total{{{job},error_type="429"}})', 1)
        assert_all_return_data(prometheus, queries_of(CALLS_MADE, dashboards()[CALLS_MADE]))

        # Cost: the calls made, priced by genai-prices' own calc_price, summed by PromQL; the relayed and the
        # unpriced calls counted apart; every call and served request under the caller's tenant.
        spend = ((plain + 1) * _usd(transcript("openai_chat")[1])
                 + (streamed + 1) * _usd(transcript("openai_chat_stream_usage")[1]))
        wait_for(lambda: abs((prometheus.value(f'sum(gen_ai_client_cost_USD_total{{{job},tenant_id="acme"}})') or 0)
                             - spend) < 1e-9, f"the spend of the calls made, {spend} USD, in PromQL")
        served = _usd(transcript("openai_chat_stream_usage")[1])
        wait_for(lambda: abs((prometheus.value(f"sum(gen_ai_server_cost_USD_total{{{job}}})") or 0) - served) < 1e-9,
                 "the relayed answer's served cost")
        for side in ("client", "server"):
            prometheus.wait_value(f'sum(gen_ai_{side}_cost_unpriced_calls_total{{{job},'
                                  f'gen_ai_response_model="deepseek-reasoner",tenant_id="acme"}})', 1)
        prometheus.wait_value(f'sum(http_server_request_duration_seconds_count{{{job},http_route="/ask",'
                              f'tenant_id="acme"}})', plain + streamed + 1)
        assert_all_return_data(prometheus, queries_of(COST, dashboards()[COST]))
        page = local_http.get(app.metrics_url, timeout=5).text
        missing = [spec.prometheus_name for spec in (*CALLS_MADE_SPECS, *COST_SPECS)
                   if f"\n{spec.prometheus_name}" not in page]
        assert not missing, f"instruments of the calls made not in the scrape: {missing}"
        checked = subprocess.run([require_binary("promtool"), "check", "metrics"], input=page.encode(),
                                 capture_output=True, timeout=30)
        assert checked.returncode in (0, 3), checked.stdout + checked.stderr  # 3: the lint test_prometheus allows
    finally:
        app.stop()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("stem", "stream"), [("ollama_chat_stream", True), ("ollama_chat_thinking", True)])
def test_ollama_chat(upstream, wire, use_async, stem, stream):
    import ollama

    client = (ollama.AsyncClient if use_async else ollama.Client)(host=upstream.url)
    _, truth, _ = transcript(stem)

    def make():
        if not use_async:
            return list(client.chat(model=stem, messages=[{"role": "user", "content": "hi"}], stream=stream))

        async def call():
            answer = await client.chat(model=stem, messages=[{"role": "user", "content": "hi"}], stream=stream)
            return [part async for part in answer]
        return call()

    assert _run(use_async, make)[-1].done
    _assert_one_call(wire.collect(), stem, truth, upstream.port, stream)


@pytest.mark.parametrize("reading", ["json", "iter_any", "iter_chunked", "lines", "read"])
@pytest.mark.parametrize("stem", ["openai_chat", "openai_chat_stream_usage", "anthropic_messages_stream"])
def test_aiohttp_every_way_of_reading(upstream, wire, reading, stem):
    import aiohttp

    _, truth, body = transcript(stem)
    if reading == "json" and truth["content_type"] != "application/json":
        pytest.skip("a stream is not one JSON document")

    async def main():
        async with aiohttp.ClientSession() as session, \
                session.post(upstream.url + truth["path"], json={"model": stem, "stream": True}) as answer:
            if reading == "json":
                return json.dumps(await answer.json()).encode()
            if reading == "read":
                return await answer.read()
            if reading == "lines":
                return b"".join([line async for line in answer.content])
            chunks = answer.content.iter_any() if reading == "iter_any" else answer.content.iter_chunked(64)
            return b"".join([chunk async for chunk in chunks])

    read = anyio.run(main)
    assert reading == "json" or read == body, "the caller reads every byte, unchanged"
    _assert_one_call(wire.collect(), stem, truth, upstream.port, streamed=truth["content_type"] != "application/json")


@pytest.mark.parametrize(("stem", "stream"), [("openai_chat", False), ("openai_chat_stream_usage", True)])
def test_litellm_as_a_library(upstream, wire, monkeypatch, stem, stream):
    """LiteLLM's httpx client sends through its aiohttp transport: one attempt, counted once."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # its price map from the package, not the network
    import litellm

    _, truth, _ = transcript(stem)

    async def main():
        answer = await litellm.acompletion(model=f"openai/{stem}", api_base=upstream.url + "/v1", api_key="test-key",
                                           messages=[{"role": "user", "content": "hi"}], stream=stream,
                                           num_retries=0, **({"stream_options": {"include_usage": True}}
                                                             if stream else {}))
        return [chunk async for chunk in answer] if stream else [answer]

    assert anyio.run(main)
    _assert_one_call(wire.collect(), stem, truth, upstream.port, stream)
