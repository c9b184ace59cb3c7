"""aiohttp's client measured at the wire, against a real aiohttp.web provider on a free loopback port that
answers with the wire transcripts (as ``tests/integration/upstream.py`` does, in the test's own loop).

Every reader method aiohttp accepts, with every keyword it accepts, reads the same bytes and raises the same
errors with the hook as without it, on aiohttp's own ``StreamReader``; the numbers are the transcript's truth,
compressed or not; a 429 that ``raise_for_status`` raises keeps its status and rate-limit headers; a caller that
leaves early is one abandoned attempt; OpenTelemetry's instrumentation suppression is honoured.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

from otel_llm_metrics.client import instrumentors
from otel_llm_metrics.client.call import flush_pending
from tests.integration.upstream import RATE_LIMITS, pieces
from tests.llm.expectations import assert_tokens
from tests.llm.test_transcripts import HERE, TRUTH

DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
REMAINING = "gen_ai.client.rate_limit.remaining"
STEMS = ["openai_chat", "openai_chat_stream_usage", "anthropic_messages_stream"]
RATE_LIMITED = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}'


def _transcript(stem: str) -> tuple[dict, bytes]:
    name = next(name for name in TRUTH if name.rsplit(".", 1)[0] == stem)
    return TRUTH[name], (HERE / name).read_bytes()


class Provider:
    """An aiohttp.web LLM provider. The request's model names the transcript; the query string says how to
    answer: ``gzip=1`` compressed, ``status=429`` rate limited, ``hold=1`` the first event then nothing until
    ``go`` is set (a provider still generating), ``cut=1`` the first event then the connection dropped,
    ``whole=1`` one Content-Length answer, ``multipart=1`` the answer as the part of a multipart/mixed body."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Provider:
        app = web.Application()
        app.router.add_post("/{path:.*}", self.answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()  # port 0: a free one, chosen by the system
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.go.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def answer(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        truth, body = _transcript((await request.json())["model"])
        if query.get("status") == "204":
            return web.Response(status=204)
        if query.get("status") == "429":
            return web.Response(status=429, body=RATE_LIMITED, content_type="application/json",
                                headers={name.decode(): value.decode() for name, value in RATE_LIMITS})
        if query.get("multipart"):
            with aiohttp.MultipartWriter("mixed", boundary="llm-answer-boundary") as writer:
                writer.append(body, {"Content-Type": truth["content_type"]})
                writer.append(b"second part\r\n", {"Content-Type": "text/plain"})
            return web.Response(body=writer)
        headers = {"Content-Type": truth["content_type"]}
        if query.get("whole"):
            return web.Response(body=body, headers=headers)
        parts = pieces(body)
        if query.get("gzip"):
            packed = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
            parts = [packed[:25], packed[25:len(packed) // 2], packed[len(packed) // 2:]]
        answer = web.StreamResponse(headers=headers)
        await answer.prepare(request)
        try:
            for i, part in enumerate(parts):
                await answer.write(part)
                if i == 0 and query.get("cut"):
                    assert request.transport is not None
                    request.transport.close()
                    return answer
                if i == 0 and query.get("hold"):
                    await self.go.wait()
            await answer.write_eof()
        except ConnectionResetError:  # the caller left, as the test wanted
            pass
        return answer


async def _loop(read: Callable[[], Awaitable[bytes]], parts: list[bytes]) -> None:
    while data := await read():
        parts.append(data)


async def _readexactly(content: aiohttp.StreamReader, parts: list[bytes]) -> None:
    try:
        while True:
            parts.append(await content.readexactly(10))
    except asyncio.IncompleteReadError as error:  # the body is no multiple of 10: its end
        parts.append(error.partial)
        raise


async def _readchunks(content: aiohttp.StreamReader, parts: list[bytes]) -> None:
    while (chunk := await content.readchunk()) != (b"", False):
        parts.append(chunk[0])


async def _iterate(iterator: object, parts: list[bytes]) -> None:
    async for item in iterator:  # type: ignore[attr-defined]
        parts.append(item[0] if isinstance(item, tuple) else item)


async def _read_nowait(content: aiohttp.StreamReader, parts: list[bytes]) -> None:
    await content.wait_eof()
    parts.append(content.read_nowait())


async def _append(parts: list[bytes], reading: Awaitable[bytes]) -> None:
    parts.append(await reading)


BIG, SMALL = 1 << 16, 20
# Each way of reading: (response, the bytes read so far) -> None. "too small" ways raise LineTooLong.
WAYS: dict[str, Callable[[aiohttp.ClientResponse, list[bytes]], Awaitable[None]]] = {
    "read()": lambda r, parts: _append(parts, r.content.read()),
    "read(n)": lambda r, parts: _loop(lambda: r.content.read(7), parts),
    "readany()": lambda r, parts: _loop(r.content.readany, parts),
    "readline()": lambda r, parts: _loop(r.content.readline, parts),
    "readline(max_line_length=)": lambda r, parts: _loop(lambda: r.content.readline(max_line_length=BIG), parts),
    "readline(max_line_length=) too small":
        lambda r, parts: _loop(lambda: r.content.readline(max_line_length=SMALL), parts),
    "readuntil(separator)": lambda r, parts: _loop(lambda: r.content.readuntil(b"\n\n"), parts),
    "readuntil(separator=, max_size=)":
        lambda r, parts: _loop(lambda: r.content.readuntil(separator=b"\n\n", max_size=BIG), parts),
    "readuntil(max_size=) too small": lambda r, parts: _loop(lambda: r.content.readuntil(max_size=SMALL), parts),
    "readexactly(n)": lambda r, parts: _readexactly(r.content, parts),
    "readchunk()": lambda r, parts: _readchunks(r.content, parts),
    "iter_chunked(n)": lambda r, parts: _iterate(r.content.iter_chunked(64), parts),
    "iter_any()": lambda r, parts: _iterate(r.content.iter_any(), parts),
    "iter_chunks()": lambda r, parts: _iterate(r.content.iter_chunks(), parts),
    "async for line": lambda r, parts: _iterate(r.content, parts),
    "wait_eof() read_nowait()": lambda r, parts: _read_nowait(r.content, parts),
    "response.read()": lambda r, parts: _append(parts, r.read()),
    "response.text()": lambda r, parts: _append(parts, _encoded(r.text())),
    "response.json()": lambda r, parts: _append(parts, _encoded(r.json(content_type=None))),
}
TOO_SMALL = sorted(name for name in WAYS if name.endswith("too small"))


async def _encoded(reading: Awaitable[object]) -> bytes:
    value = await reading
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


Outcome = tuple[bytes, tuple[type, str] | None, bool]


async def _call(url: str, stem: str, way: str, **session: object) -> Outcome:
    """What a caller reading the answer ``way`` gets: the bytes, the error (type and text), and whether its
    ``response.content`` was aiohttp's own StreamReader while it read and exactly that class once released."""
    parts: list[bytes] = []
    error: tuple[type, str] | None = None
    async with aiohttp.ClientSession(**session) as client, \
            client.post(url, json={"model": stem, "stream": True}) as response:
        own_reader = isinstance(response.content, aiohttp.StreamReader)
        try:
            await WAYS[way](response, parts)
        except Exception as raised:  # noqa: BLE001 - compared with the bare run
            error = (type(raised), str(raised))
    return b"".join(parts), error, own_reader and type(response.content) is aiohttp.StreamReader


def _run(make: Callable[[Provider], Awaitable[object]]) -> object:
    async def main() -> object:
        async with Provider() as provider:
            return await make(provider)
    return asyncio.run(main())


@pytest.fixture
def wire(make_telemetry):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    yield telemetry
    instrumentors.uninstall()


def _bare_then_measured(wire, make: Callable[[Provider], Awaitable[object]]) -> tuple[object, object]:
    instrumentors.uninstall()
    bare = _run(make)
    wire.measure_upstream_calls()
    wire.registry.gen_ai.reset()
    return bare, _run(make)


def _assert_one_attempt(view, error_type: str | None) -> None:
    (attempt,) = view.points(ATTEMPTS)
    assert attempt.value == 1 and attempt.attributes.get("error.type") == error_type


@pytest.mark.parametrize(("stem", "way"), [(stem, way) for stem in STEMS for way in sorted(set(WAYS) - set(TOO_SMALL))
                                            if way != "response.json()" or stem == "openai_chat"])  # a stream: no JSON
def test_every_way_of_reading_reads_what_it_reads_bare_on_aiohttps_own_reader_and_gives_the_truth(wire, stem, way):
    truth, body = _transcript(stem)
    bare, measured = _bare_then_measured(wire, lambda p: _call(p.url + truth["path"], stem, way))
    assert measured == bare, "the same bytes and the same error as without the hook"
    read, error, own_reader = measured
    assert own_reader, "response.content is aiohttp's StreamReader"
    if way == "readexactly(n)":
        assert error is not None and error[0] is asyncio.IncompleteReadError
    else:
        assert error is None
    if way != "response.json()":
        assert read == body
    view = wire.collect()
    _assert_one_attempt(view, None)
    assert_tokens(view.points(TOKENS), truth)
    (duration,) = view.points(DURATION)
    assert duration.attributes["gen_ai.response.model"] == truth["model"]


@pytest.mark.parametrize("way", TOO_SMALL)
def test_a_line_too_long_for_the_callers_limit_raises_as_bare_and_the_caller_leaving_is_abandoned(wire, way):
    stem = "openai_chat_stream_usage"
    truth, _ = _transcript(stem)
    # the provider holds the rest of the answer: the caller leaves before it arrives
    bare, measured = _bare_then_measured(wire, lambda p: _call(p.url + truth["path"] + "?hold=1", stem, way))
    assert measured == bare
    _, error, own_reader = measured
    assert own_reader and error is not None and error[0] is aiohttp.http_exceptions.LineTooLong
    view = wire.collect()
    _assert_one_attempt(view, "abandoned")
    assert not view.points(DURATION), "an abandoned call has no operation duration"


def test_a_multipart_answer_reads_the_same_parts_through_multipartreader(wire):
    truth, body = _transcript("openai_chat")

    async def call(provider: Provider) -> tuple[list[tuple[str, bytes]], bool]:
        async with aiohttp.ClientSession() as client, \
                client.post(provider.url + truth["path"] + "?multipart=1", json={"model": "openai_chat"}) as response:
            own_reader = isinstance(response.content, aiohttp.StreamReader)
            reader = aiohttp.MultipartReader.from_response(response)
            found = []
            while (part := await reader.next()) is not None:
                found.append((part.headers["Content-Type"], bytes(await part.read())))
            return found, own_reader

    bare, measured = _bare_then_measured(wire, call)
    assert measured == bare
    parts, own_reader = measured
    assert own_reader and parts == [(truth["content_type"], body), ("text/plain", b"second part\r\n")]
    _assert_one_attempt(wire.collect(), None)


@pytest.mark.parametrize(("stem", "reading"), [("openai_chat", "response.json()"),
                                              ("openai_chat", "readuntil(separator=, max_size=)"),
                                              ("anthropic_messages_stream", "readuntil(separator=, max_size=)")])
def test_a_gzip_answer_gives_the_exact_tokens_decompressed_by_aiohttp(wire, stem, reading):
    truth, body = _transcript(stem)
    read, error, own_reader = _run(lambda p: _call(p.url + truth["path"] + "?gzip=1", stem, reading))
    assert error is None and own_reader
    assert read == body or reading == "response.json()"
    assert_tokens(wire.collect().points(TOKENS), truth)


@pytest.mark.parametrize("where", ["session", "request"])
def test_an_answer_aiohttp_does_not_decode_reaches_the_caller_as_sent_and_is_counted(wire, where):
    """``auto_decompress=False``: the caller gets the compressed bytes; the attempt is told they are encoded."""
    truth, body = _transcript("anthropic_messages_stream")

    async def call(provider: Provider) -> tuple[bytes, bool]:
        options = {"auto_decompress": False}
        async with aiohttp.ClientSession(**(options if where == "session" else {})) as client, \
                client.post(provider.url + truth["path"] + "?gzip=1", json={"model": "anthropic_messages_stream"},
                            **(options if where == "request" else {})) as response:
            return await response.content.read(), isinstance(response.content, aiohttp.StreamReader)

    read, own_reader = _run(call)
    assert gzip.decompress(read) == body and own_reader
    _assert_one_attempt(wire.collect(), None)


@pytest.mark.parametrize("level", ["session", "request"])
def test_raise_for_status_keeps_a_429s_status_and_rate_limit_headers(wire, level):
    truth, _ = _transcript("openai_chat")

    async def call(provider: Provider) -> tuple[type, int, str]:
        async with aiohttp.ClientSession(raise_for_status=level == "session") as client:
            try:
                await client.post(provider.url + truth["path"] + "?status=429", json={"model": "openai_chat"},
                                  **({"raise_for_status": True} if level == "request" else {}))
            except aiohttp.ClientResponseError as error:
                return type(error), error.status, error.message
        raise AssertionError("no 429 raised")

    bare, measured = _bare_then_measured(wire, call)
    assert measured == bare == (aiohttp.ClientResponseError, 429, "Too Many Requests")
    flush_pending()
    view = wire.collect()
    _assert_one_attempt(view, "429")
    assert view.one(DURATION).attributes["error.type"] == "429"
    remaining = {point.attributes["gen_ai.rate_limit.resource"]: point.value for point in view.points(REMAINING)}
    assert remaining == {"requests": 0, "tokens": 29000}


@pytest.mark.parametrize("leaving", ["release()", "close()", "async with"])
def test_a_caller_that_leaves_before_the_end_is_one_abandoned_attempt(wire, leaving):
    truth, _ = _transcript("openai_chat_stream_usage")

    async def call(provider: Provider) -> tuple[bytes, bool]:
        async with aiohttp.ClientSession() as client:
            context = client.post(provider.url + truth["path"] + "?hold=1", json={"model": "openai_chat_stream_usage"})
            if leaving == "async with":
                async with context as response:
                    first = await response.content.readline(max_line_length=BIG)
                    own_reader = isinstance(response.content, aiohttp.StreamReader)
                return first, own_reader
            response = await context
            first = await response.content.readline(max_line_length=BIG)
            own_reader = isinstance(response.content, aiohttp.StreamReader)
            response.release() if leaving == "release()" else response.close()
            return first, own_reader

    first, own_reader = _run(call)
    assert first.startswith(b"data: {") and own_reader
    view = wire.collect()
    _assert_one_attempt(view, "abandoned")
    assert not view.points(DURATION)


def test_a_dropped_connection_raises_as_bare_and_fails_the_attempt(wire):
    truth, _ = _transcript("openai_chat_stream_usage")
    way = "readline(max_line_length=)"
    bare, measured = _bare_then_measured(
        wire, lambda p: _call(p.url + truth["path"] + "?cut=1", "openai_chat_stream_usage", way))
    assert measured == bare
    _, error, own_reader = measured
    assert own_reader and error is not None and error[0] is aiohttp.ClientPayloadError
    flush_pending()
    view = wire.collect()
    (attempt,) = view.points(ATTEMPTS)
    assert attempt.attributes.get("error.type") not in (None, "abandoned")


@pytest.mark.parametrize("timeout", ["sock_read", "total"])
def test_a_provider_that_stops_sending_is_a_timeout(wire, timeout):
    truth, _ = _transcript("openai_chat_stream_usage")
    way = "readuntil(separator=, max_size=)"
    limit = aiohttp.ClientTimeout(**{timeout: 0.3})  # the timeout under test: the provider never sends the rest
    read, error, own_reader = _run(lambda p: _call(p.url + truth["path"] + "?hold=1", "openai_chat_stream_usage",
                                                   way, timeout=limit))
    assert own_reader and read.startswith(b"data: {")
    assert error is not None and issubclass(error[0], asyncio.TimeoutError)
    flush_pending()
    _assert_one_attempt(wire.collect(), "timeout")


def test_an_answer_whole_on_arrival_is_recorded_before_the_caller_reads_it(wire):
    """The bytes aiohttp buffered before ``_request`` returned are measured, and a finished body ends the
    attempt: the numbers do not wait for a caller that reads late, or never."""
    truth, body = _transcript("openai_chat")

    async def call(provider: Provider) -> tuple[int, object, bytes]:
        async with aiohttp.ClientSession() as client, \
                client.post(provider.url + truth["path"] + "?whole=1", json={"model": "openai_chat"}) as response:
            arrived = response.content.total_bytes
            view = wire.collect()  # nothing read yet
            return arrived, view, await response.read()

    arrived, view, read = _run(call)
    assert arrived == len(body), "the answer came whole with its headers (the case under test)"
    _assert_one_attempt(view, None)
    assert_tokens(view.points(TOKENS), truth)
    assert read == body


def test_an_answer_without_a_body_is_recorded_when_it_arrives(wire):
    async def call(provider: Provider) -> tuple[object, bytes]:
        url = provider.url + "/v1/chat/completions?status=204"
        async with aiohttp.ClientSession() as client, client.post(url, json={"model": "openai_chat"}) as response:
            return wire.collect(), await response.read()

    view, read = _run(call)
    assert read == b""
    _assert_one_attempt(view, None)


@pytest.mark.parametrize("suppress", [suppress_http_instrumentation, suppress_instrumentation])
def test_suppressed_instrumentation_is_not_measured(wire, suppress):
    truth, body = _transcript("openai_chat_stream_usage")

    async def call(provider: Provider) -> Outcome:
        with suppress():
            return await _call(provider.url + truth["path"], "openai_chat_stream_usage", "iter_any()")

    read, error, own_reader = _run(call)
    assert read == body and error is None and own_reader
    assert not wire.collect().points(ATTEMPTS)
