"""Answers are read as the client decodes them: br, zstd, gzip and deflate through httpx and httpx2, sync and async,
give the transcript's tokens however the compressed bytes are split, and the caller reads what it reads bare.
An answer the transport had already read (a mock, a cache, a cassette: ``Response(content=...)``) is recorded
at once from its content."""

from __future__ import annotations

import gzip
import zlib

import anyio
import brotli
import httpx
import httpx2
import openai
import pytest
import zstandard

from otel_llm_metrics.client import instrumentors
from tests.client.test_wire import _transport
from tests.llm.expectations import assert_tokens
from tests.llm.test_transcripts import HERE, TRUTH

DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
REQUEST = b'{"model": "requested-model", "messages": []}'
ENCODINGS = {"br": brotli.compress, "zstd": zstandard.ZstdCompressor().compress, "gzip": gzip.compress,
             "deflate": zlib.compress}
MODULES = {"httpx": httpx, "httpx2": httpx2}


@pytest.fixture
def wire(make_telemetry):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    yield telemetry
    instrumentors.uninstall()


def _post(module, chunks: list[bytes], encoding: str, content_type: str, use_async: bool, stream: bool) -> bytes:
    """What the caller reads: the whole body (``read``) or its decoded pieces (``iter_bytes``)."""
    headers = [("content-type", content_type), ("content-encoding", encoding)]
    transport = _transport(module, chunks, headers=headers)
    url = "http://llm.test/v1/chat/completions"
    if not use_async:
        with module.Client(transport=transport) as client:
            if stream:
                with client.stream("POST", url, content=REQUEST) as answer:
                    return b"".join(answer.iter_bytes())
            return client.post(url, content=REQUEST).content

    async def main():
        async with module.AsyncClient(transport=transport) as client:
            if stream:
                async with client.stream("POST", url, content=REQUEST) as answer:
                    return b"".join([piece async for piece in answer.aiter_bytes()])
            return (await client.post(url, content=REQUEST)).content
    return anyio.run(main)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("module", sorted(MODULES))
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_every_split_of_a_compressed_answer_gives_its_tokens_and_the_caller_its_bytes(wire, module, encoding,
                                                                                      use_async):
    module = MODULES[module]
    for name, stream in (("openai_chat.json", False), ("openai_chat_stream_usage.sse", True)):
        truth, body = TRUTH[name], (HERE / name).read_bytes()
        packed = ENCODINGS[encoding](body)
        content_type = truth["content_type"]
        instrumentors.uninstall()
        bare = _post(module, [packed], encoding, content_type, use_async, stream)
        wire.measure_upstream_calls()
        assert bare == body
        step = 1 if not use_async else max(1, len(packed) // 40)  # every cut sync; a spread of them async
        for cut in range(1, len(packed), step):
            wire.registry.gen_ai.reset()
            read = _post(module, [packed[:cut], packed[cut:]], encoding, content_type, use_async, stream)
            assert read == bare, f"{name} cut at {cut}: the caller reads what it reads bare"
            view = wire.collect()
            assert_tokens(view.points(TOKENS), truth)
            (duration,) = view.points(DURATION)
            assert duration.count == 1 and "error.type" not in duration.attributes
            assert duration.attributes["gen_ai.response.model"] == truth["model"], f"{name} cut at {cut}"


def test_an_encoding_the_client_cannot_decode_is_passed_on_and_counted_without_tokens(wire):
    body = (HERE / "openai_chat.json").read_bytes()
    read = _post(httpx2, [body], "x-unknown", "application/json", False, False)
    assert read == body, "the client hands it out as it came"
    view = wire.collect()
    assert view.one(DURATION).count == 1 and not view.points(TOKENS)


@pytest.mark.parametrize("module", sorted(MODULES))
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_an_answer_a_mock_transport_built_with_content_is_recorded_with_its_tokens(wire, module, use_async):
    """openai's SDK over ``MockTransport``: the response is read at construction, its stream never iterated."""
    module = MODULES[module]
    truth, body = TRUTH["openai_chat.json"], (HERE / "openai_chat.json").read_bytes()
    packed = gzip.compress(body)

    def answer(request):
        return module.Response(200, headers={"content-type": "application/json", "content-encoding": "gzip"},
                               content=packed)
    transport = module.MockTransport(answer)
    if use_async:
        client = openai.AsyncOpenAI(base_url="http://llm.test/v1", api_key="k", max_retries=0,
                                    http_client=module.AsyncClient(transport=transport))

        async def main():
            return await client.chat.completions.create(model="requested", messages=[])
        completion = anyio.run(main)
    else:
        client = openai.OpenAI(base_url="http://llm.test/v1", api_key="k", max_retries=0,
                               http_client=module.Client(transport=transport))
        completion = client.chat.completions.create(model="requested", messages=[])
    assert completion.usage.prompt_tokens == truth["input"]
    view = wire.collect()
    (duration,) = view.points(DURATION)
    assert duration.count == 1 and duration.attributes["gen_ai.response.model"] == truth["model"]
    assert {p.attributes.get("error.type"): p.value for p in view.points(ATTEMPTS)} == {None: 1}
    assert_tokens(view.points(TOKENS), truth)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("module", sorted(MODULES))
def test_an_answer_is_decompressed_once_by_the_client_alone(wire, monkeypatch, module, encoding):
    made = []
    decompressobj = zlib.decompressobj

    def counting(*args, **kwargs):
        made.append(args)
        return decompressobj(*args, **kwargs)
    monkeypatch.setattr(zlib, "decompressobj", counting)
    truth, body = TRUTH["openai_chat.json"], (HERE / "openai_chat.json").read_bytes()
    read = _post(MODULES[module], [ENCODINGS[encoding](body)], encoding, "application/json", False, False)
    assert read == body and len(made) == 1, "the client's own decompressor, and no second one of ours"
    assert_tokens(wire.collect().points(TOKENS), truth)
