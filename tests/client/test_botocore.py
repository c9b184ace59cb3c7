"""Bedrock through real boto3, against a local HTTP endpoint (``endpoint_url``) answering with AWS's published
formats: Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream (Anthropic and Amazon Nova
bodies, the streams also split at every byte on the wire), a 429 with botocore's own retries, a throttling
exception inside a stream; what boto3 returns is the same with and without the tap, and nothing of botocore's is
left patched after uninstall."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote

import boto3
import botocore.endpoint
import botocore.exceptions
import pytest
import urllib3
import wrapt
from botocore.config import Config

from otel_llm_metrics.client import botocore_hook, hook, instrumentors
from otel_llm_metrics.llm.exchange import LlmExchange
from tests.llm.bedrock_frames import (
    ANTHROPIC_MESSAGE,
    ANTHROPIC_STREAM_EVENTS,
    CONVERSE_ANSWER,
    NOVA_MESSAGE,
    NOVA_STREAM_EVENTS,
    anthropic_invoke_stream,
    converse_stream,
    event,
    exception,
    nova_invoke_stream,
)
from tests.stand_in import serving

DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
TTFC = "gen_ai.client.operation.time_to_first_chunk"
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
MISTRAL_ANSWER = {"outputs": [{"text": "Hi", "stop_reason": "length"}]}
STREAM = "application/vnd.amazon.eventstream"


class Bedrock(BaseHTTPRequestHandler):
    """Answers by the path's action and model (an Amazon Nova model gets Nova's InvokeModel bodies, any other
    Anthropic's); ``throttled`` counts down the 429s still to give; ``cut`` (with ``chunked``) sends the body as
    two HTTP chunks split at that byte."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK
    throttled = 0
    chunked = False
    cut: int | None = None
    seen: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        path = self.path.split("?")[0]
        model, action = unquote(path.split("/")[2]), path.rsplit("/", 1)[1]
        type(self).seen.append(model)
        if model.startswith("throttle") and type(self).throttled > 0:
            type(self).throttled -= 1
            return self._answer(429, b'{"message":"Too many requests, please wait before trying again."}',
                                "application/json", [("x-amzn-ErrorType", "ThrottlingException:http://internal/")])
        if action == "converse":
            return self._answer(200, json.dumps(CONVERSE_ANSWER).encode(), "application/json")
        nova = "amazon.nova" in model
        if action == "invoke" and model.startswith("mistral."):  # no usage in the body: Bedrock's headers alone
            return self._answer(200, json.dumps(MISTRAL_ANSWER).encode(), "application/json", [
                ("X-Amzn-Bedrock-Input-Token-Count", "30"), ("X-Amzn-Bedrock-Output-Token-Count", "7"),
                ("X-Amzn-Bedrock-Invocation-Latency", "250")])
        if action == "invoke" and nova:  # no token headers: the body alone says the usage
            return self._answer(200, json.dumps(NOVA_MESSAGE).encode(), "application/json")
        if action == "invoke":
            return self._answer(200, json.dumps(ANTHROPIC_MESSAGE).encode(), "application/json", [
                ("X-Amzn-Bedrock-Input-Token-Count", "15"), ("X-Amzn-Bedrock-Output-Token-Count", "5")])
        if action == "converse-stream":
            body = converse_stream()
            if model.startswith("stream-throttle"):
                body = event("messageStart", {"role": "assistant"}) + event(
                    "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}}) + exception(
                    "throttlingException")
            return self._answer(200, body, STREAM)
        if action == "invoke-with-response-stream":
            return self._answer(200, nova_invoke_stream() if nova else anthropic_invoke_stream(), STREAM)
        return self._answer(200, b"{}", "application/json")

    def _answer(self, status, body, content_type, headers=()):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        for name, value in headers:
            self.send_header(name, value)
        if type(self).chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            cut = type(self).cut
            # odd pieces, frames split across chunks; or two pieces split at ``cut`` (an empty one is left out)
            pieces = [body[at:at + 37] for at in range(0, len(body), 37)] if cut is None else [body[:cut], body[cut:]]
            for piece in filter(None, pieces):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    with serving(Bedrock) as url:
        yield url


@pytest.fixture
def client(server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda seconds: None)  # botocore's retry back-off
    Bedrock.throttled, Bedrock.chunked, Bedrock.cut, Bedrock.seen = 0, False, None, []
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server,
                        config=Config(retries={"max_attempts": 3, "mode": "standard"}))


@pytest.fixture
def tap(make_telemetry):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    assert botocore_hook.patch(hook.current) == ["botocore"]
    yield telemetry
    telemetry.registry.gen_ai.prices.wait_loaded()  # its loader imports httpx2 while uninstall looks at it
    botocore_hook.unpatch()
    instrumentors.uninstall()


MESSAGES = [{"role": "user", "content": [{"text": "Hello"}]}]
ANTHROPIC_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": [
    {"role": "user", "content": "Hello"}]})
NOVA_BODY = json.dumps({"schemaVersion": "messages-v1", "messages": MESSAGES, "inferenceConfig": {"maxTokens": 64}})
# InvokeModelWithResponseStream by family: model, request body, the family's events the chunks carry, the answer's
# bytes, and what the reader the tap used must read (see ``read_by_the_tap``).
STREAM_FACTS = {
    "anthropic": (HAIKU, ANTHROPIC_BODY, ANTHROPIC_STREAM_EVENTS, anthropic_invoke_stream,
                  (16, 6, 5, None, "end_turn", 2, True)),
    "nova": (NOVA, NOVA_BODY, NOVA_STREAM_EVENTS, nova_invoke_stream, (20, 4, 6, 2, "end_turn", 3, True)),
}


def read_by_the_tap(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Per recorded call, what the reader the tap used read: (input, output, cache read, cache write, finish
    reason, content events, first content timed). The client side has no finish-reason metric to look at."""
    facts: list[tuple] = []
    record_call: Callable[..., None] = LlmExchange.record_call

    def spy(self: LlmExchange, *args: object, **kwargs: object) -> None:
        record_call(self, *args, **kwargs)  # it finishes the reader: a JSON answer is read at its end
        reader = self.parser
        facts.append((reader.input_tokens, reader.output_token_count(), reader.cache_read_tokens,
                      reader.cache_creation_tokens, reader.finish_reason, reader.content_events,
                      reader.first_token_at > 0) if reader is not None else None)

    monkeypatch.setattr(LlmExchange, "record_call", spy)
    return facts


def _tokens(view) -> dict[str, int]:
    """Token sums by type."""
    found: dict[str, int] = {}
    for point in view.points(TOKENS):
        kind = point.attributes["gen_ai.token.type"]
        found[kind] = found.get(kind, 0) + point.sum
    return found


def _calls(client) -> list:
    """Every call's result as boto3 returns it (metadata's request ids and dates aside)."""
    results = []
    answer = client.converse(modelId=HAIKU, messages=MESSAGES)
    answer.pop("ResponseMetadata")
    results.append(answer)
    stream = client.converse_stream(modelId=HAIKU, messages=MESSAGES)
    results.append(list(stream["stream"]))
    answer = client.invoke_model(modelId=HAIKU, body=ANTHROPIC_BODY)
    results.append((answer["body"].read(), answer["contentType"]))
    answer = client.invoke_model_with_response_stream(modelId=HAIKU, body=ANTHROPIC_BODY)
    results.append(list(answer["body"]))
    return results


@pytest.mark.parametrize("chunked", [False, True])
def test_boto3_returns_the_same_with_and_without_the_tap(client, make_telemetry, chunked):
    Bedrock.chunked = chunked
    bare = _calls(client)
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    botocore_hook.patch(hook.current)
    try:
        assert _calls(client) == bare
        view = telemetry.collect()
        assert view.total_count(DURATION) == 4
    finally:
        telemetry.registry.gen_ai.prices.wait_loaded()
        botocore_hook.unpatch()
        instrumentors.uninstall()
    for name in ("_send", "_send_request"):  # botocore's own methods are back
        assert not isinstance(botocore.endpoint.Endpoint.__dict__[name], wrapt.ObjectProxy)


def test_converse(client, tap):
    client.converse(modelId=HAIKU, messages=MESSAGES)
    view = tap.collect()
    point = view.one(DURATION, gen_ai__operation__name="chat")
    assert point.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert point.attributes["gen_ai.request.model"] == HAIKU
    assert "error.type" not in point.attributes
    assert _tokens(view) == {"input": 7, "output": 4}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="genai-prices needs Python 3.11 (only the prices file "
                                                          "prices on 3.10)")
def test_cost_in_usd_exact_with_a_cross_region_profile(client, tap):
    from genai_prices import Usage, calc_price
    client.converse(modelId=HAIKU, messages=MESSAGES)
    list(client.converse_stream(modelId=HAIKU, messages=MESSAGES)["stream"])
    tap.registry.gen_ai.prices.wait_loaded()
    view = tap.collect()
    want = sum(float(calc_price(Usage(input_tokens=i, output_tokens=o), HAIKU, provider_id="aws").total_price)
               for i, o in ((7, 4), (9, 3)))
    (cost,) = view.points("gen_ai.client.cost")
    assert want > 0 and abs(cost.value - want) <= 1e-12
    assert cost.attributes["gen_ai.provider.name"] == "aws.bedrock"


SONNET = "anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="genai-prices needs Python 3.11 (only the prices file "
                                                          "prices on 3.10)")
def test_cost_in_usd_exact_with_global_and_regional_profiles(client, tap):
    """A ``global.`` cross-region profile has its own price (lower than a geography's ``us.``/``eu.``/``apac.``),
    also when named by its ARN: each call is priced at its own profile's price, exactly."""
    from genai_prices import Usage, calc_price
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.{SONNET}"
    models = (f"global.{SONNET}", f"us.{SONNET}", f"eu.{SONNET}", arn)
    for model in models:
        client.converse(modelId=model, messages=MESSAGES)
        list(client.converse_stream(modelId=model, messages=MESSAGES)["stream"])
    tap.registry.gen_ai.prices.wait_loaded()
    view = tap.collect()
    wants = {model: sum(float(calc_price(Usage(input_tokens=i, output_tokens=o), model, provider_id="aws").total_price)
                        for i, o in ((7, 4), (9, 3))) for model in models}
    assert wants[f"global.{SONNET}"] == wants[arn] < wants[f"us.{SONNET}"] == wants[f"eu.{SONNET}"], wants
    for model, want in wants.items():
        cost = view.one("gen_ai.client.cost", gen_ai__request__model=model)
        assert want > 0 and abs(cost.value - want) <= 1e-12, (model, cost.value, want)
        assert cost.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert view.total_count(DURATION) == 2 * len(models)


@pytest.mark.parametrize("chunked", [False, True])
def test_converse_stream(client, tap, chunked):
    Bedrock.chunked = chunked
    events = list(client.converse_stream(modelId=HAIKU, messages=MESSAGES)["stream"])
    assert [next(iter(e)) for e in events] == ["messageStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop", "messageStop", "metadata"]
    view = tap.collect()
    point = view.one(DURATION)
    assert "error.type" not in point.attributes and point.attributes["gen_ai.request.model"] == HAIKU
    assert _tokens(view) == {"input": 9, "output": 3}
    assert view.one(TTFC).count == 1


def test_a_stream_read_in_pieces_by_the_caller(client, tap):
    answer = client.invoke_model_with_response_stream(modelId=HAIKU, body=ANTHROPIC_BODY)
    assert tap.collect().total_count(DURATION) == 0  # not over until botocore has read it
    assert len(list(answer["body"])) == 7
    view = tap.collect()
    assert _tokens(view) == {"input": 16, "output": 6}
    assert view.one(DURATION).attributes["gen_ai.response.model"] == "claude-3-5-haiku-20241022"


def test_invoke_model_anthropic(client, tap):
    answer = client.invoke_model(modelId=HAIKU, body=ANTHROPIC_BODY)
    assert json.loads(answer["body"].read())["usage"]["input_tokens"] == 13
    view = tap.collect()
    assert _tokens(view) == {"input": 15, "output": 5}
    assert view.one(DURATION).attributes["gen_ai.operation.name"] == "chat"


def test_invoke_model_nova(client, tap, monkeypatch):
    facts = read_by_the_tap(monkeypatch)
    answer = client.invoke_model(modelId=NOVA, body=NOVA_BODY)
    assert json.loads(answer["body"].read()) == NOVA_MESSAGE
    view = tap.collect()
    point = view.one(DURATION)
    assert point.attributes["gen_ai.operation.name"] == "chat" and point.attributes["gen_ai.request.model"] == NOVA
    assert "error.type" not in point.attributes
    assert _tokens(view) == {"input": 31, "output": 8}  # 21 uncached + 10 read from the cache
    assert facts == [(31, 8, 10, 0, "max_tokens", 1, False)]
    assert view.total_count(TTFC) == 0, "a JSON answer has no first chunk"


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("family", sorted(STREAM_FACTS))
def test_invoke_model_with_response_stream(client, tap, monkeypatch, family, chunked):
    model, body, events, _, truth = STREAM_FACTS[family]
    facts = read_by_the_tap(monkeypatch)
    Bedrock.chunked = chunked
    answer = client.invoke_model_with_response_stream(modelId=model, body=body)
    assert [json.loads(e["chunk"]["bytes"]) for e in answer["body"]] == events, "boto3 hands out every event"
    view = tap.collect()
    point = view.one(DURATION)
    assert "error.type" not in point.attributes and point.attributes["gen_ai.request.model"] == model
    assert point.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert _tokens(view) == {"input": truth[0], "output": truth[1]}
    assert facts == [truth]
    (first,) = view.points(TTFC)
    assert first.count == 1 and 0 < first.sum <= point.sum


@pytest.mark.parametrize("family", sorted(STREAM_FACTS))
def test_invoke_model_with_response_stream_split_at_every_byte_on_the_wire(client, tap, monkeypatch, family):
    """Each answer comes as two HTTP chunks split at one byte, every byte in turn: botocore reads them as they come
    (urllib3's ``read_chunked``), so the tap sees each split; every call reads the same."""
    model, body, _, stream, truth = STREAM_FACTS[family]
    facts = read_by_the_tap(monkeypatch)
    Bedrock.chunked = True
    size = len(stream())
    for cut in range(size + 1):
        Bedrock.cut = cut
        answer = client.invoke_model_with_response_stream(modelId=model, body=body)
        for _ in answer["body"]:
            pass
    misread = [(cut, found) for cut, found in enumerate(facts) if found != truth]
    assert not misread and len(facts) == size + 1, misread[:3]
    view = tap.collect()
    assert view.one(DURATION).count == size + 1 and view.one(TTFC).count == size + 1
    assert _tokens(view) == {"input": truth[0] * (size + 1), "output": truth[1] * (size + 1)}


def test_invoke_model_without_usage_in_the_body_is_counted_by_bedrock_headers(client, tap, monkeypatch):
    facts = read_by_the_tap(monkeypatch)
    answer = client.invoke_model(modelId=MISTRAL, body=json.dumps({"prompt": "<s>[INST] Hello [/INST]"}))
    assert json.loads(answer["body"].read()) == MISTRAL_ANSWER
    assert _tokens(tap.collect()) == {"input": 30, "output": 7}
    assert facts == [(30, 7, None, None, "length", 1, False)]


def test_invoke_model_body_read_in_small_pieces(client, tap):
    answer = client.invoke_model(modelId=HAIKU, body=ANTHROPIC_BODY)
    body = answer["body"]
    pieces = []
    while piece := body.read(10):
        pieces.append(piece)
    assert json.loads(b"".join(pieces))["stop_reason"] == "max_tokens"
    assert _tokens(tap.collect()) == {"input": 15, "output": 5}


def test_a_body_closed_unread_is_abandoned(client, tap):
    answer = client.invoke_model_with_response_stream(modelId=HAIKU, body=ANTHROPIC_BODY)
    answer["body"].close()
    point = tap.collect().one(ATTEMPTS)
    assert point.attributes["error.type"] == "abandoned"


def test_a_stream_dropped_unread_is_abandoned_when_collected(client, tap):
    import gc
    client.converse_stream(modelId=HAIKU, messages=MESSAGES)
    gc.collect()
    assert tap.collect().one(ATTEMPTS).attributes["error.type"] == "abandoned"


def test_throttled_with_retries_is_one_operation_of_three_attempts(client, tap):
    Bedrock.throttled = 2
    client.converse(modelId="throttle-model", messages=MESSAGES)
    view = tap.collect()
    attempts = {point.attributes.get("error.type"): point.value for point in view.points(ATTEMPTS)}
    assert attempts == {"429": 2, None: 1}
    (operation,) = view.points(DURATION)
    assert operation.count == 1 and "error.type" not in operation.attributes
    assert _tokens(view) == {"input": 7, "output": 4}


def test_throttled_past_the_retries_is_one_failed_operation(client, tap):
    Bedrock.throttled = 9  # botocore's max_attempts=3 counts retries: 4 attempts
    with pytest.raises(client.exceptions.ThrottlingException):
        client.converse_stream(modelId="throttle-model", messages=MESSAGES)
    view = tap.collect()
    assert {point.attributes.get("error.type"): point.value for point in view.points(ATTEMPTS)} == {"429": 4}
    assert view.one(DURATION).attributes["error.type"] == "429"
    assert view.one(DURATION).count == 1
    assert Bedrock.seen == ["throttle-model"] * 4


def test_a_throttling_exception_inside_the_stream(client, tap):
    stream = client.converse_stream(modelId="stream-throttle-model", messages=MESSAGES)["stream"]
    with pytest.raises(botocore.exceptions.EventStreamError, match="throttlingException"):
        list(stream)
    view = tap.collect()
    assert view.one(DURATION).attributes["error.type"] == "throttlingException"


def test_suppressed_calls_and_other_bedrock_operations_are_not_measured(client, tap):
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        client.converse(modelId=HAIKU, messages=MESSAGES)
    finally:
        detach(token)
    client.apply_guardrail(guardrailIdentifier="g1", guardrailVersion="1", source="INPUT",
                           content=[{"text": {"text": "hi"}}])
    assert tap.collect().total_count(DURATION) == 0
    assert Bedrock.seen == [HAIKU, "g1"]


def test_the_response_is_its_own_class_again_once_read(client, tap):
    answer = client.invoke_model(modelId=HAIKU, body=ANTHROPIC_BODY)
    raw = answer["body"]._raw_stream
    assert type(raw) is not urllib3.response.HTTPResponse and isinstance(raw, urllib3.response.HTTPResponse)
    answer["body"].read()
    assert type(raw) is urllib3.response.HTTPResponse and "_otel_llm_metrics_tap" not in raw.__dict__
