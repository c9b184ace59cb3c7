"""LLM calls made through httpx and httpx2 (the openai, anthropic, google-genai, ollama, mistralai and groq
SDKs, LiteLLM, LangChain's OpenAI classes), measured where each HTTP attempt is sent.

``Client._send_single_request`` (and ``AsyncClient``'s) sends one attempt over whatever transport the
client has (LiteLLM's aiohttp transport included), so every retry and every custom transport is seen.
An LLM call (``hook.Hook`` decides) gets an ``Attempt``. The LLM core reads the body as the SDK reads it,
the same bytes, unbuffered: a plain body from the response stream, which is wrapped; a content-encoded one
(br, zstd, gzip, deflate) from the client's own decoder, which is wrapped, so nothing is decompressed twice;
a body the transport had already read (a mock, a cache, a cassette) at once. The stream wrapper ends the
attempt in every case. Other calls, and calls under OpenTelemetry's ``suppress_instrumentation``, go
straight through. The SDKs whose retry loops make one operation of several attempts are followed too
(``operation``).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from opentelemetry.context import get_current
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled

try:  # the keys is_http_instrumentation_enabled() reads, read straight from the context (1/5 of its cost)
    from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY as _HTTP
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _ALL
except ImportError:  # an API that moved them: ask it
    _HTTP = _ALL = None

from ..mcp import client as mcp_client
from . import operation
from .call import SENDING, Attempt

logger = logging.getLogger(__name__)
MODULES = ("httpx", "httpx2")
_SEND = "_send_single_request"
CurrentHook = Callable[[], Any]  # () -> hook.Hook | None
_current: CurrentHook = lambda: None  # noqa: E731 - set by patch()
_active = False  # post-import hooks cannot be removed: registered once, they patch only while active
_registered = False


def patch(current: CurrentHook) -> list[str]:
    """Measure the clients of every installed module, now or when it is imported (wrapt's post-import hooks:
    a process that never imports httpx never pays for it); names the modules installed."""
    global _current, _active, _registered
    _current, _active = current, True
    installed = [name for name in MODULES if importlib.util.find_spec(name) is not None]
    if not _registered:
        import wrapt

        _registered = True
        for name in MODULES:  # at once for a module imported already
            wrapt.register_post_import_hook(_patch_module, name)
    else:
        for name in MODULES:
            module = sys.modules.get(name)
            # one another thread is still importing (the price table's loader imports httpx2) is patched by the
            # post-import hook when its import ends; patched now, it has no Client yet
            if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
                _patch_module(module)
    if installed:
        operation.patch()
    return installed


def unpatch() -> None:
    """Put the clients' own methods back."""
    global _active
    _active = False
    operation.unpatch()
    from opentelemetry.instrumentation.utils import unwrap

    for name in MODULES:
        module = sys.modules.get(name)
        for client in (getattr(module, "Client", None), getattr(module, "AsyncClient", None)):
            if client is not None and _ours(client):  # None too for a module another thread is still importing
                unwrap(client, _SEND)


def _ours(client: type) -> bool:
    return getattr(client.__dict__.get(_SEND), "_self_otel_llm_metrics", False)


def _patch_module(module: Any) -> None:
    if not _active:
        return
    try:
        import wrapt

        answer = _answering(module)
        for client, send in ((module.Client, _sync_send(answer)), (module.AsyncClient, _async_send(answer))):
            if not _ours(client):
                wrapt.wrap_function_wrapper(client, _SEND, send)
                client.__dict__[_SEND]._self_otel_llm_metrics = True
    except Exception:  # an httpx we do not know: its calls stay unmeasured, the app runs
        logger.warning("otel_llm_metrics: could not measure LLM calls made with %s", module.__name__, exc_info=True)


def _attempt(request: Any) -> Attempt | None:
    hook = _current()
    if hook is None or request.method != "POST" or SENDING.get() or _suppressed():
        return None
    try:
        url = request.url
        try:
            body = request.content
        except Exception:  # a streamed upload: its model stays unknown
            body = None
        return hook.attempt("POST", url.scheme, url.host, url.port, url.path, body)
    except Exception:
        return None


def _mcp_call(request: Any) -> mcp_client.McpCall | None:
    """MCP hook point (otel_llm_metrics/mcp/client.py): a POST whose body is JSON-RPC, or the DELETE that ends a
    session, read like an LLM attempt; None for anything else (a GET returns at the first test)."""
    method = request.method
    if method != "POST" and method != "DELETE":
        return None
    hook = _current()
    if hook is None or SENDING.get() or _suppressed():
        return None
    return mcp_client.call_for(hook.stats, request)


def _suppressed() -> bool:
    """OpenTelemetry's ``suppress_instrumentation`` or ``suppress_http_instrumentation`` is on."""
    context = get_current()
    if not context:  # nothing in the OTel context: the common case outside a traced request
        return False
    if _ALL is None:
        return not is_http_instrumentation_enabled()
    return bool(context.get(_ALL) or context.get(_HTTP) or context.get("suppress_instrumentation"))


Answer = Callable[[Any, Attempt, bool], None]  # (response, attempt, async) -> None


def _sync_send(answer: Answer) -> Callable[..., Any]:
    """A wrapt wrapper of ``Client._send_single_request(request)``."""
    def _send_single_request(original: Callable[..., Any], client: Any, args: tuple, kwargs: dict) -> Any:
        request = args[0] if args else kwargs["request"]
        attempt = _attempt(request)
        mcp = None
        if attempt is None:
            attempt = mcp = _mcp_call(request)  # MCP hook point
            if mcp is None:
                return original(*args, **kwargs)
        sending = SENDING.set(True)
        try:
            response = original(*args, **kwargs)
        except BaseException as error:
            attempt.failed(error)
            raise
        finally:
            SENDING.reset(sending)
        if mcp is not None:
            mcp.response(response)
        answer(response, attempt, False)
        return response

    return _send_single_request


def _async_send(answer: Answer) -> Callable[..., Any]:
    """A wrapt wrapper of ``AsyncClient._send_single_request(request)``."""
    async def _send_single_request(original: Callable[..., Any], client: Any, args: tuple, kwargs: dict) -> Any:
        request = args[0] if args else kwargs["request"]
        attempt = _attempt(request)
        mcp = None
        if attempt is None:
            attempt = mcp = _mcp_call(request)  # MCP hook point
            if mcp is None:
                return await original(*args, **kwargs)
        sending = SENDING.set(True)
        try:
            response = await original(*args, **kwargs)
        except BaseException as error:
            attempt.failed(error)
            raise
        finally:
            SENDING.reset(sending)
        if mcp is not None:
            mcp.response(response)
        answer(response, attempt, True)
        return response

    return _send_single_request


def _answering(module: Any) -> Answer:
    """How ``module``'s responses are shown to their attempt (see the module's docstring)."""
    sync_stream, async_stream = _stream_types(module)
    identity = module._decoders.IdentityDecoder
    tap = _BytesTap if isinstance(identity().decode(b"x"), bytes) else _PiecesTap  # httpx; httpx2 yields pieces

    def answer(response: Any, attempt: Attempt, is_async: bool) -> None:
        status, headers = response.status_code, response.headers
        headers = getattr(headers, "_list", None) or headers.raw  # its own triples, not a new list of pairs
        content = response.__dict__.get("_content")
        if content is not None:  # built with content=: read (and decoded) already, its stream never iterated
            attempt.answered(status, headers, decoded=True)
            attempt.chunk(content)
            attempt.end()
            return
        feed = True
        if attempt.answered(status, headers):  # content-encoded: read through the client's own decoder
            feed = False
            try:
                decoder = response._get_content_decoder()
                if not isinstance(decoder, identity):  # else an encoding it cannot decode: nor can we
                    response._decoder = tap(decoder, attempt)
                    attempt.decoding()
            except Exception:  # the caller's read raises the same error; timings are still kept
                logger.debug("otel_llm_metrics: no decoder for an encoded answer", exc_info=True)
        response.stream = (async_stream if is_async else sync_stream)(response.stream, attempt, feed)

    return answer


class _BytesTap:
    """httpx's content decoder, showing each decoded piece to the attempt (``decode`` returns bytes)."""

    __slots__ = ("_inner", "_attempt")

    def __init__(self, inner: Any, attempt: Attempt) -> None:
        self._inner = inner
        self._attempt = attempt

    def decode(self, data: bytes) -> bytes:
        decoded = self._inner.decode(data)
        self._attempt.chunk(decoded)
        return decoded

    def flush(self) -> bytes:
        decoded = self._inner.flush()
        self._attempt.chunk(decoded)
        return decoded


class _PiecesTap(_BytesTap):
    """httpx2's content decoder, whose ``decode`` and ``flush`` yield pieces."""

    __slots__ = ()

    def decode(self, data: bytes) -> Iterator[bytes]:  # type: ignore[override]
        chunk = self._attempt.chunk
        for piece in self._inner.decode(data):
            chunk(piece)
            yield piece

    def flush(self) -> Iterator[bytes]:  # type: ignore[override]
        chunk = self._attempt.chunk
        for piece in self._inner.flush():
            chunk(piece)
            yield piece


def _stream_types(module: Any) -> tuple[type, type]:
    """Response streams of ``module``'s own types (its Response checks them) that end the attempt: at the body's
    end, at an error, or when the reader closes before the end; ``feed``: they also show each chunk to it (a
    plain body; an encoded one is shown by the decoder)."""

    class RecordingStream(module.SyncByteStream):
        def __init__(self, inner: Any, attempt: Attempt, feed: bool = True) -> None:
            self._inner = inner
            self._attempt = attempt
            self._feed = feed

        def __iter__(self) -> Iterator[bytes]:
            attempt = self._attempt
            try:
                if self._feed:
                    for chunk in self._inner:
                        attempt.chunk(chunk)
                        yield chunk
                else:
                    for chunk in self._inner:
                        yield chunk
            except BaseException as error:
                attempt.failed(error)
                raise
            attempt.end()

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._attempt.end(body_complete=False)

        @property
        def elapsed(self) -> Any:  # httpx2's Response reads its elapsed time from its stream
            return getattr(self._inner, "elapsed", None)

    class AsyncRecordingStream(module.AsyncByteStream):
        def __init__(self, inner: Any, attempt: Attempt, feed: bool = True) -> None:
            self._inner = inner
            self._attempt = attempt
            self._feed = feed

        async def __aiter__(self) -> AsyncIterator[bytes]:
            attempt = self._attempt
            try:
                if self._feed:
                    async for chunk in self._inner:
                        attempt.chunk(chunk)
                        yield chunk
                else:
                    async for chunk in self._inner:
                        yield chunk
            except BaseException as error:
                attempt.failed(error)
                raise
            attempt.end()

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._attempt.end(body_complete=False)

        @property
        def elapsed(self) -> Any:
            return getattr(self._inner, "elapsed", None)

    return RecordingStream, AsyncRecordingStream
