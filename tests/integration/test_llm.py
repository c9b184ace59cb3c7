"""LLM metrics from real traffic: the official openai client, raw httpx on Ollama's API, a proxy."""

from __future__ import annotations

import httpx
import openai
import pytest

from otel_llm_metrics.cli import parse
from tests import local_http
from tests.integration.servers import AppServer, wait_for

pytestmark = pytest.mark.integration
MODEL = "llm-test-model"  # its own label value: other tests share the demo app
PROMPT = [{"role": "user", "content": "one two three four"}]  # 4 tokens for the demo's tokenizer


def _sum(prometheus, metric: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in {"gen_ai_request_model": MODEL, **labels}.items())
    return prometheus.value(f"sum({metric}{{{selector}}})") or 0.0


def test_openai_client_token_sums_and_time_to_first_token(demo_app, prometheus):
    client = openai.OpenAI(base_url=demo_app.url + "/v1", api_key="unused", max_retries=0)
    plain, streams, bare_streams = 5, 3, 2
    for _ in range(plain):
        client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=7)
    for _ in range(streams):
        for _chunk in client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=5, stream=True,
                                                     stream_options={"include_usage": True}):
            pass
    for _ in range(bare_streams):  # no usage asked for: output is counted from the deltas
        for _chunk in client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=4, stream=True):
            pass
    with client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=2000, stream=True) as abandoned:
        next(iter(abandoned))
        next(iter(abandoned))

    tokens = "gen_ai_server_token_usage_sum"
    wait_for(lambda: _sum(prometheus, "gen_ai_server_request_duration_seconds_count")
             == plain + streams + bare_streams, "every finished LLM request counted once, the abandoned one not")
    assert _sum(prometheus, tokens, gen_ai_token_type="input") == 4 * (plain + streams)
    reported = _sum(prometheus, tokens, gen_ai_token_type="output", gen_ai_usage_estimated="false")
    assert reported == 7 * plain + 5 * streams
    wait_for(lambda: _sum(prometheus, tokens, gen_ai_token_type="output", gen_ai_usage_estimated="true") >= 4 * 2 + 1,
             "estimated output of the usage-less and the abandoned streams")
    assert _sum(prometheus, "gen_ai_server_time_per_output_token_seconds_count") == streams + bare_streams
    selector = f'gen_ai_request_model="{MODEL}"'
    p50 = prometheus.value("histogram_quantile(0.5, sum by (le) "
                           f"(gen_ai_server_time_to_first_token_seconds_bucket{{{selector}}}))")
    assert p50 is not None and 0.02 <= p50 <= 0.25, f"simulated first-token delay is 20 ms, p50 was {p50}"


def test_ollama_native_api_over_http(demo_app):
    with httpx.Client(base_url=demo_app.url, timeout=30) as client:
        lines = client.post("/api/chat", json={"model": "llama-native", "messages": PROMPT,
                                               "options": {"num_predict": 6}}).text.strip().splitlines()
        assert len(lines) == 7
        client.post("/api/generate", json={"model": "llama-native", "prompt": "a b", "stream": False,
                                           "options": {"num_predict": 3}})

    def tokens() -> dict:
        _, histograms = parse(local_http.get(demo_app.metrics_url).text)
        found = {}
        for key, data in histograms.get("gen_ai_server_token_usage", {}).items():
            labels = dict(key)
            if labels.get("gen_ai_request_model") == "llama-native":
                found[(labels["gen_ai_operation_name"], labels["gen_ai_token_type"])] = data.total
        return found
    wait_for(lambda: tokens() == {("chat", "input"): 4, ("chat", "output"): 6, ("text_completion", "input"): 2,
                                  ("text_completion", "output"): 3}, "Ollama token counts on the metrics endpoint")


@pytest.mark.parametrize(("media_type", "usage"), [("text/event-stream", True), ("text/plain", True),
                                                   ("none", False)])
def test_proxy_translating_ollama_ndjson_to_openai_sse(prometheus, media_type, usage):
    """A gateway nobody here wrote the parser for: SSE under whatever media type, counted in PromQL."""
    upstream = AppServer("otel_llm_metrics.demo.app:app", zero_code=False).wait_ready()
    proxy = AppServer("tests.integration.proxy_app:app",
                      env={"UPSTREAM_URL": upstream.url, "PROXY_MEDIA_TYPE": media_type}).wait_ready()
    model = f"proxied-{media_type.replace('/', '-')}"
    streams, max_tokens = 3, 9
    try:
        prometheus.add_target(f"127.0.0.1:{proxy.metrics_port}")
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
        for _ in range(streams):
            options = {"stream_options": {"include_usage": True}} if usage else {}
            text = "".join(chunk.choices[0].delta.content or ""
                           for chunk in client.chat.completions.create(
                               model=model, messages=PROMPT, max_tokens=max_tokens, stream=True, **options)
                           if chunk.choices)
            assert len(text.split()) == max_tokens, "the client got the whole answer"
        selector = f'gen_ai_request_model="{model}",gen_ai_response_model="{model}"'
        prometheus.wait_value(f"sum(gen_ai_server_time_to_first_token_seconds_count{{{selector}}})", streams)
        prometheus.wait_value(f'sum(gen_ai_server_token_usage_sum{{{selector},gen_ai_token_type="output",'
                              f'gen_ai_usage_estimated="{str(not usage).lower()}"}})', streams * max_tokens)
        if usage:
            prometheus.wait_value(f'sum(gen_ai_server_token_usage_sum{{{selector},gen_ai_token_type="input"}})',
                                  streams * 4)
        prometheus.wait_value(f"sum(gen_ai_server_time_per_output_token_seconds_count{{{selector}}})", streams)
    finally:
        proxy.stop()
        upstream.stop()


def test_anthropic_client_streams_and_messages_with_cache_reads(demo_app, prometheus):
    """The official anthropic client against the demo's Messages API, counted in PromQL."""
    import anthropic

    client = anthropic.Anthropic(base_url=demo_app.url, api_key="unused", max_retries=0)
    model, system = "claude-test-model", "you are a terse assistant"  # 5 tokens, read from the cache
    streams, messages, max_tokens = 3, 2, 6
    for _ in range(streams):
        with client.messages.stream(model=model, max_tokens=max_tokens, system=system, messages=PROMPT) as stream:
            assert len("".join(stream.text_stream).split()) == max_tokens
    for _ in range(messages):
        reply = client.messages.create(model=model, max_tokens=max_tokens, system=system, messages=PROMPT)
        assert reply.stop_reason == "max_tokens" and reply.usage.cache_read_input_tokens == 5
    calls = streams + messages
    selector = f'gen_ai_request_model="{model}",gen_ai_provider_name="anthropic"'
    # Each series is waited for: a scrape can land while the last request's numbers are being recorded, and see
    # its duration but not yet its response count (a fresh clone saw 4 of 5); the next scrape has them all.
    prometheus.wait_value(f"sum(gen_ai_server_request_duration_seconds_count{{{selector}}})", calls)
    tokens = f"sum(gen_ai_server_token_usage_sum{{{selector}"
    prometheus.wait_value(tokens + ',gen_ai_token_type="input"})', calls * (4 + 5))  # input includes the cache
    prometheus.wait_value(tokens + ',gen_ai_token_type="output",gen_ai_usage_estimated="false"})', calls * max_tokens)
    prometheus.wait_value(f"sum(gen_ai_server_time_to_first_token_seconds_count{{{selector}}})", streams)
    prometheus.wait_value(f'sum(gen_ai_server_responses_total{{{selector},'
                          f'gen_ai_response_finish_reason="max_tokens"}})', calls)
    assert prometheus.value(f'count(gen_ai_server_token_usage_count{{{selector},gen_ai_token_type="input"}})') == 1, (
        "one series: the cache split is in no released convention")


@pytest.fixture(scope="module")
def openlit_path(tmp_path_factory):
    """The real OpenLIT from PyPI, without the dozens of instrumentations it depends on (they would
    change every other test's zero-code run): just the package and what it needs to import."""
    import subprocess
    import sys

    target = tmp_path_factory.mktemp("openlit")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "openlit",
                    "schedule", "xmltodict"], check=True, capture_output=True, timeout=300)
    return target


def test_openlit_copies_of_gen_ai_metrics_do_not_mix_with_ours(openlit_path):
    """OpenLIT records its client-side timings under gen_ai.server.* and the calls under gen_ai.client.*, names
    we emit too (we measure the gateway's calls at its HTTP client): only our copies may reach the page."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.integration.servers import ROOT

    upstream = AppServer("otel_llm_metrics.demo.app:app", zero_code=False).wait_ready()
    gateway = AppServer("tests.integration.openlit_gateway:app",
                        env={"UPSTREAM_URL": upstream.url, "PYTHONPATH": f"{ROOT}:{openlit_path}"}).wait_ready()
    streams = 3
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
        for _ in range(streams):
            for _chunk in client.chat.completions.create(model="via-openlit", messages=PROMPT, max_tokens=5,
                                                         stream=True):
                pass

        def scopes() -> dict[str, set[str]]:
            found: dict[str, set[str]] = {}
            for family in text_string_to_metric_families(local_http.get(gateway.metrics_url, timeout=5).text):
                for sample in family.samples:
                    found.setdefault(family.name, set()).add(sample.labels.get("otel_scope_name", ""))
            return found

        def ours_counted() -> dict[str, set[str]] | None:
            found = scopes()
            _, histograms = parse(local_http.get(gateway.metrics_url, timeout=5).text)
            ttft = histograms.get("gen_ai_server_time_to_first_token_seconds", {})
            made = histograms.get("gen_ai_client_operation_time_to_first_chunk_seconds", {})
            openlit_active = "openlit.otel.metrics" in found.get("gen_ai_usage_cost_USD", set())  # a name of its own
            counted = sum(d.count for d in ttft.values()) == sum(d.count for d in made.values()) == streams
            return found if openlit_active and counted else None
        found = wait_for(ours_counted, "our counts of both directions, and OpenLIT's own gen_ai.usage.cost")
        for name in ("gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_per_output_token_seconds",
                     "gen_ai_server_request_duration_seconds", "gen_ai_client_operation_duration_seconds",
                     "gen_ai_client_operation_time_to_first_chunk_seconds", "gen_ai_client_token_usage"):
            assert found[name] == {"otel_llm_metrics"}, f"{name} from {found[name]}"
    finally:
        gateway.stop()
        upstream.stop()
