"""The client path in-process: httpx and httpx2 clients, sync and async, over a transport that answers with a
wire transcript in given chunks. What the caller reads and raises is exactly what it reads and raises
bare, and the numbers are the transcript's truth, however the bytes are split."""

from __future__ import annotations

import gzip
import random

import anyio
import httpx
import httpx2
import pytest

from otel_llm_metrics.client import instrumentors
from tests.llm.expectations import assert_tokens
from tests.llm.test_transcripts import HERE, TRUTH

DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
REQUEST = b'{"model": "requested-model", "stream": true, "messages": []}'


def _transport(module, chunks: list[bytes], status: int = 200, headers=(), fail_after: int | None = None):
    """A transport of ``module`` answering every request with ``chunks`` (and raising after ``fail_after``)."""

    class Chunks(module.SyncByteStream, module.AsyncByteStream):
        def __iter__(self):
            for i, chunk in enumerate(chunks):
                if fail_after is not None and i == fail_after:
                    raise module.ReadError("connection lost")
                yield chunk

        async def __aiter__(self):
            for chunk in self.__iter__():
                yield chunk

    class Transport(module.BaseTransport, module.AsyncBaseTransport):
        def handle_request(self, request):
            return module.Response(status, headers=list(headers), stream=Chunks())

        async def handle_async_request(self, request):
            return self.handle_request(request)

    return Transport()


def _read(module, transport, path: str, use_async: bool = False, body: bytes = REQUEST,
          host: str = "llm.test") -> tuple[bytes | None, BaseException | None]:
    """What a caller streaming the answer reads, and what it raises."""
    url = f"http://{host}{path}"
    if not use_async:
        try:
            with module.Client(transport=transport) as client, client.stream("POST", url, content=body) as answer:
                return b"".join(answer.iter_raw()), None
        except Exception as error:  # noqa: BLE001 - compared with the bare run
            return None, error

    async def main():
        try:
            async with module.AsyncClient(transport=transport) as client, \
                    client.stream("POST", url, content=body) as answer:
                return b"".join([part async for part in answer.aiter_raw()]), None
        except Exception as error:  # noqa: BLE001
            return None, error
    return anyio.run(main)


@pytest.fixture
def wire(make_telemetry):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    yield telemetry
    instrumentors.uninstall()


STREAMED = sorted(name for name, truth in TRUTH.items() if truth["first_content"] is not None)


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_every_byte_split_reads_the_same_bytes_and_gives_the_truth(make_telemetry, name):
    truth, body = TRUTH[name], (HERE / name).read_bytes()
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    try:
        step = max(1, len(body) // 150)  # every boundary of small bodies; a spread of them in large ones
        for cut in range(1, len(body), step):
            stats = telemetry.registry.gen_ai
            stats.reset()
            read, raised = _read(httpx2, _transport(httpx2, [body[:cut], body[cut:]]), truth["path"])
            assert raised is None and read == body, f"cut at {cut}: the caller reads every byte, unchanged"
            view = telemetry.collect()
            assert_tokens(view.points(TOKENS), truth)
            (duration,) = view.points(DURATION)
            expected_error = "_OTHER" if truth["error"] else None
            assert duration.attributes.get("error.type") == expected_error, f"cut at {cut}"
            assert duration.attributes["gen_ai.provider.name"] == truth["provider"]
            assert duration.attributes["gen_ai.operation.name"] == truth["operation"]
    finally:
        instrumentors.uninstall()


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_random_chunkings_through_either_client_give_the_truth(wire, module, use_async):
    generator = random.Random(7)
    for name in STREAMED:
        truth, body = TRUTH[name], (HERE / name).read_bytes()
        cuts = sorted(generator.sample(range(1, len(body)), min(12, len(body) - 1)))
        chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        wire.registry.gen_ai.reset()
        read, raised = _read(module, _transport(module, chunks), truth["path"], use_async)
        assert raised is None and read == body
        assert_tokens(wire.collect().points(TOKENS), truth)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_an_error_mid_stream_reaches_the_caller_unchanged_and_is_counted(wire, use_async):
    body = (HERE / "openai_chat_stream_usage.sse").read_bytes()
    chunks = [body[:40], body[40:120], body[120:]]
    instrumentors.uninstall()  # bare first
    bare_read, bare_raised = _read(httpx2, _transport(httpx2, chunks, fail_after=2), "/v1/chat/completions", use_async)
    wire.measure_upstream_calls()
    read, raised = _read(httpx2, _transport(httpx2, chunks, fail_after=2), "/v1/chat/completions", use_async)
    assert read is bare_read is None
    assert type(raised) is type(bare_raised) is httpx2.ReadError and str(raised) == str(bare_raised)
    view = wire.collect()
    (attempt,) = view.points(ATTEMPTS)
    assert attempt.attributes["error.type"] == "connection_error" and attempt.value == 1
    assert view.one(DURATION).attributes["error.type"] == "connection_error"


def test_a_compressed_answer_is_read_decompressed_and_passed_on_as_sent(wire):
    truth, body = TRUTH["openai_chat.json"], (HERE / "openai_chat.json").read_bytes()
    packed = gzip.compress(body)
    headers = [("content-type", "application/json"), ("content-encoding", "gzip")]
    with httpx2.Client(transport=_transport(httpx2, [packed[:30], packed[30:]], headers=headers)) as client:
        answer = client.post("http://llm.test/v1/chat/completions", content=REQUEST)
    assert answer.content == body, "the caller decodes it as before"
    assert_tokens(wire.collect().points(TOKENS), truth)


def test_a_stream_closed_before_its_answer_ended_is_one_abandoned_attempt_and_no_operation(wire):
    body = (HERE / "openai_chat_stream_usage.sse").read_bytes()
    transport = _transport(httpx2, [body[:60], body[60:200], body[200:]])
    with httpx2.Client(transport=transport) as client, \
            client.stream("POST", "http://llm.test/v1/chat/completions", content=REQUEST) as answer:
        next(answer.iter_raw())  # the reader leaves after the first chunk
    view = wire.collect()
    (attempt,) = view.points(ATTEMPTS)
    assert attempt.value == 1 and attempt.attributes["error.type"] == "abandoned"
    assert not view.points(DURATION), "an abandoned stream has no operation duration"


def test_thousands_of_models_and_hosts_stay_bounded_and_every_call_counts(make_telemetry):
    telemetry = make_telemetry(max_model_names=50, max_series=300)
    telemetry.measure_upstream_calls()
    body = (HERE / "openai_chat.json").read_bytes()
    try:
        with httpx2.Client(transport=_transport(httpx2, [body])) as client:
            for i in range(5000):
                client.post(f"http://h{i}.test/v1/chat/completions", content=b'{"model": "m%d"}' % i).read()
        stats = telemetry.registry.gen_ai
        assert len(stats.client.series) <= 301 and len(stats.attempts.counts) <= 301
        view = telemetry.collect()
        assert sum(point.count for point in view.points(DURATION)) == 5000
        assert sum(point.value for point in view.points(ATTEMPTS)) == 5000
        hosts = {point.attributes.get("server.address") for point in view.points(DURATION)}
        assert len(hosts) <= 52  # 50 names, _OTHER, and the overflow series without attributes
    finally:
        instrumentors.uninstall()


def test_uninstall_restores_the_clients_own_methods(make_telemetry):
    original = httpx2.Client._send_single_request
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    assert httpx2.Client._send_single_request is not original
    instrumentors.uninstall()
    assert httpx2.Client._send_single_request is original
