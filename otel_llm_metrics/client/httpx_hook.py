"""LLM calls made through httpx and httpx2 (the openai, anthropic, google-genai, ollama, mistralai and groq
SDKs, LiteLLM, LangChain's OpenAI classes), measured where each HTTP attempt is sent.

``Client._send_single_request`` (and ``AsyncClient``'s) sends one attempt over whatever transport the
client has (LiteLLM's aiohttp transport included), so every retry and every custom transport is seen.
An LLM call (``hook.Hook`` decides) gets an ``Attempt``; its response stream is wrapped so the LLM core
reads each chunk as the SDK reads it, the same bytes, unbuffered. Other calls go straight through.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .call import SENDING, Attempt
from .headers import RETRY_COUNT

logger = logging.getLogger(__name__)
MODULES = ("httpx", "httpx2")
_MARK = "_otel_llm_metrics_original"
CurrentHook = Callable[[], Any]  # () -> hook.Hook | None


def patch(current: CurrentHook) -> list[str]:
    """Patch every importable client module once; names what was patched."""
    patched = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        try:
            _patch(module, current)
            patched.append(name)
        except Exception:  # an httpx we do not know: its calls stay unmeasured, the app runs
            logger.warning("otel_llm_metrics: could not measure LLM calls made with %s", name, exc_info=True)
    return patched


def unpatch() -> None:
    for name in MODULES:
        module = sys.modules.get(name)
        for client in (module.Client, module.AsyncClient) if module is not None else ():
            original = getattr(client._send_single_request, _MARK, None)
            if original is not None:
                client._send_single_request = original


def _attempt(current: CurrentHook, request: Any) -> Attempt | None:
    hook = current()
    if hook is None or request.method != "POST" or SENDING.get():
        return None
    try:
        url = request.url
        try:
            body = request.content
        except Exception:  # a streamed upload: its model stays unknown
            body = None
        return hook.attempt("POST", url.scheme, url.host, url.port, url.path, body, request.headers.get(RETRY_COUNT))
    except Exception:
        return None


def _patch(module: Any, current: CurrentHook) -> None:
    sync_stream, async_stream = _stream_types(module)
    client, async_client = module.Client, module.AsyncClient
    if getattr(client._send_single_request, _MARK, None) is None:
        client._send_single_request = _sync_send(client._send_single_request, sync_stream, current)
    if getattr(async_client._send_single_request, _MARK, None) is None:
        async_client._send_single_request = _async_send(async_client._send_single_request, async_stream, current)


def _sync_send(original: Callable[..., Any], stream_type: type, current: CurrentHook) -> Callable[..., Any]:
    def _send_single_request(self: Any, request: Any) -> Any:
        attempt = _attempt(current, request)
        if attempt is None:
            return original(self, request)
        sending = SENDING.set(True)
        try:
            response = original(self, request)
        except BaseException as error:
            attempt.failed(error)
            raise
        finally:
            SENDING.reset(sending)
        attempt.answered(response.status_code, response.headers.raw)
        response.stream = stream_type(response.stream, attempt)
        return response

    setattr(_send_single_request, _MARK, original)
    return _send_single_request


def _async_send(original: Callable[..., Any], stream_type: type, current: CurrentHook) -> Callable[..., Any]:
    async def _send_single_request(self: Any, request: Any) -> Any:
        attempt = _attempt(current, request)
        if attempt is None:
            return await original(self, request)
        sending = SENDING.set(True)
        try:
            response = await original(self, request)
        except BaseException as error:
            attempt.failed(error)
            raise
        finally:
            SENDING.reset(sending)
        attempt.answered(response.status_code, response.headers.raw)
        response.stream = stream_type(response.stream, attempt)
        return response

    setattr(_send_single_request, _MARK, original)
    return _send_single_request


def _stream_types(module: Any) -> tuple[type, type]:
    """Response streams of ``module``'s own types (its Response checks them) that show each chunk to the
    attempt and end it: at the body's end, at an error, or when the reader closes before the end."""

    class RecordingStream(module.SyncByteStream):
        def __init__(self, inner: Any, attempt: Attempt) -> None:
            self._inner = inner
            self._attempt = attempt

        def __iter__(self) -> Iterator[bytes]:
            attempt = self._attempt
            try:
                for chunk in self._inner:
                    attempt.chunk(chunk)
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
        def __init__(self, inner: Any, attempt: Attempt) -> None:
            self._inner = inner
            self._attempt = attempt

        async def __aiter__(self) -> AsyncIterator[bytes]:
            attempt = self._attempt
            try:
                async for chunk in self._inner:
                    attempt.chunk(chunk)
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
