"""LLM calls made through aiohttp's ClientSession, measured like httpx's (``httpx_hook``).

``ClientSession._request`` sends each request; an LLM call (``hook.Hook`` decides) gets an ``Attempt``,
and the response's ``content`` reader is wrapped so every way of reading it (``read``, ``json``,
``iter_any``, ``iter_chunked``, lines, ``readany``...) shows the LLM core the same bytes the caller gets.
aiohttp has decoded any content encoding already. The attempt ends at the body's end, at an error, or
when the caller releases or closes the response first.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .call import SENDING, Attempt
from .headers import RETRY_COUNT

logger = logging.getLogger(__name__)
_MARK = "_otel_llm_metrics_original"
_ATTEMPT = "_otel_llm_metrics_attempt"
CurrentHook = Callable[[], Any]  # () -> hook.Hook | None


def patch(current: CurrentHook) -> list[str]:
    try:
        aiohttp = importlib.import_module("aiohttp")
    except ImportError:
        return []
    try:
        session, response = aiohttp.ClientSession, aiohttp.ClientResponse
        if getattr(session._request, _MARK, None) is None:
            session._request = _request(session._request, current, aiohttp.streams.AsyncStreamIterator)
        for name in ("release", "close"):
            method = getattr(response, name)
            if getattr(method, _MARK, None) is None:
                setattr(response, name, _ending(method))
    except Exception:  # an aiohttp we do not know: its calls stay unmeasured, the app runs
        logger.warning("otel_llm_metrics: could not measure LLM calls made with aiohttp", exc_info=True)
        return []
    return ["aiohttp"]


def unpatch() -> None:
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return
    for owner, name in ((aiohttp.ClientSession, "_request"), (aiohttp.ClientResponse, "release"),
                        (aiohttp.ClientResponse, "close")):
        original = getattr(getattr(owner, name), _MARK, None)
        if original is not None:
            setattr(owner, name, original)


def _attempt(current: CurrentHook, session: Any, method: str, url: Any, kwargs: dict) -> Attempt | None:
    hook = current()
    if hook is None or method.upper() != "POST" or SENDING.get():
        return None
    try:
        url = session._build_url(url) if hasattr(session, "_build_url") else url
        if isinstance(url, str):
            from yarl import URL

            url = URL(url)
        body = kwargs.get("data")
        payload = kwargs.get("json")
        model = payload.get("model") if isinstance(payload, dict) else None
        headers = kwargs.get("headers") or {}
        retries = next((str(v) for k, v in dict(headers).items() if str(k).lower() == RETRY_COUNT), None)
        return hook.attempt("POST", url.scheme, url.host or "", url.port, url.path,
                            body if isinstance(body, bytes) else None, retries, model)
    except Exception:
        return None


def _request(original: Callable[..., Awaitable[Any]], current: CurrentHook, iterator: type) -> Callable[..., Any]:
    async def request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        attempt = _attempt(current, self, method, str_or_url, kwargs)
        if attempt is None:
            return await original(self, method, str_or_url, **kwargs)
        try:
            response = await original(self, method, str_or_url, **kwargs)
        except BaseException as error:
            attempt.failed(error)
            raise
        attempt.answered(response.status, list(response.raw_headers), decoded=True)
        response.content = _Reading(response.content, attempt, iterator)
        setattr(response, _ATTEMPT, attempt)
        return response

    setattr(request, _MARK, original)
    return request


def _ending(original: Callable[..., Any]) -> Callable[..., Any]:
    """``release``/``close`` of a response: its reader closed it, at the end or before."""
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        attempt = self.__dict__.get(_ATTEMPT)
        if attempt is not None:
            attempt.end(body_complete=self.content.at_eof())
        return original(self, *args, **kwargs)

    setattr(method, _MARK, original)
    return method


class _Reading:
    """The response's StreamReader as the caller sees it, with each chunk shown to the attempt."""

    def __init__(self, inner: Any, attempt: Attempt, iterator: type) -> None:
        self._inner = inner
        self._attempt = attempt
        self._iterator = iterator

    def __getattr__(self, name: str) -> Any:  # at_eof, exception, total_bytes, ...
        return getattr(self._inner, name)

    async def _through(self, reading: Awaitable[bytes]) -> bytes:
        attempt = self._attempt
        try:
            data = await reading
        except BaseException as error:
            attempt.failed(error)
            raise
        if data:
            attempt.chunk(data)
        if not data or self._inner.at_eof():
            attempt.end()
        return data

    def read(self, n: int = -1) -> Awaitable[bytes]:
        return self._through(self._inner.read(n))

    def readany(self) -> Awaitable[bytes]:
        return self._through(self._inner.readany())

    def readline(self) -> Awaitable[bytes]:
        return self._through(self._inner.readline())

    def readuntil(self, separator: bytes = b"\n") -> Awaitable[bytes]:
        return self._through(self._inner.readuntil(separator))

    def readexactly(self, n: int) -> Awaitable[bytes]:
        return self._through(self._inner.readexactly(n))

    async def readchunk(self) -> tuple[bytes, bool]:
        attempt = self._attempt
        try:
            data, end_of_chunk = await self._inner.readchunk()
        except BaseException as error:
            attempt.failed(error)
            raise
        if data:
            attempt.chunk(data)
        if self._inner.at_eof():
            attempt.end()
        return data, end_of_chunk

    def iter_chunked(self, n: int) -> Any:
        return self._iterator(lambda: self.read(n))

    def iter_any(self) -> Any:
        return self._iterator(self.readany)

    def iter_chunks(self) -> Any:
        return _ChunkTuples(self)

    def __aiter__(self) -> Any:
        return self._iterator(self.readline)


class _ChunkTuples:
    def __init__(self, reading: _Reading) -> None:
        self._reading = reading

    def __aiter__(self) -> _ChunkTuples:
        return self

    async def __anext__(self) -> tuple[bytes, bool]:
        chunk = await self._reading.readchunk()
        if chunk == (b"", False):
            raise StopAsyncIteration
        return chunk
