"""Issue 26, item 6: behind a text/plain SSE proxy, every stream's first token is observed.

The OpenAI SDK closes its connection at ``data: [DONE]``; a proxy still busy after that event (here:
reading its upstream to the end) sees the client leave before its last body message. Such a stream
was recorded as cancelled, without its time to first token; tokens and HTTP request counts were
right. A real uvicorn under ``opentelemetry-instrument``, the real openai client, 20 streams.
"""

from __future__ import annotations

import openai
import pytest

from otel_llm_metrics.cli import parse
from tests import local_http
from tests.integration.servers import AppServer, wait_for

pytestmark = pytest.mark.integration
STREAMS, MAX_TOKENS = 20, 9
PROMPT = [{"role": "user", "content": "one two three four"}]


def test_a_text_plain_sse_proxy_never_misses_a_first_token():
    upstream = AppServer("tests.integration.held_upstream:app", zero_code=False).wait_ready()
    proxy = AppServer("tests.integration.proxy_app:app", env={"UPSTREAM_URL": upstream.url, "PROXY_DONE_EARLY": "1",
                                                            "PROXY_MEDIA_TYPE": "text/plain"}).wait_ready()
    model = "relayed-text-plain"
    try:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
        for _ in range(STREAMS):
            chunks = list(client.chat.completions.create(model=model, messages=PROMPT, max_tokens=MAX_TOKENS,
                                                         stream=True, stream_options={"include_usage": True}))
            text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
            assert len(text.split()) == MAX_TOKENS and chunks[-1].usage.completion_tokens == MAX_TOKENS

        def counts() -> dict[str, float]:
            _, histograms = parse(local_http.get(proxy.metrics_url, timeout=5).text)
            found = {}
            for name in ("http_server_request_duration_seconds", "gen_ai_server_request_duration_seconds",
                         "gen_ai_server_time_to_first_token_seconds", "gen_ai_server_token_usage"):
                found[name] = sum(data.count for key, data in histograms.get(name, {}).items()
                                  if name.startswith("http") or dict(key).get("gen_ai_request_model") == model)
            return found
        # Each request is recorded once the server has seen its client leave: wait for all of them.
        seen = wait_for(lambda: (c := counts())["http_server_request_duration_seconds"] == STREAMS and c,
                        f"{STREAMS} requests recorded by the proxy")
        assert seen["gen_ai_server_token_usage"] == 2 * STREAMS, "input and output tokens of every stream"
        assert seen["gen_ai_server_time_to_first_token_seconds"] == STREAMS, f"a first token missed: {seen}"
        assert seen["gen_ai_server_request_duration_seconds"] == STREAMS
    finally:
        proxy.stop()
        upstream.stop()
