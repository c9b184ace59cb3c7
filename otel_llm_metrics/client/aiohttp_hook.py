"""LLM calls made through aiohttp's ClientSession, measured like httpx's (``httpx_hook``).

``ClientSession._request`` sends each request; an LLM call (``hook.Hook`` decides) gets an ``Attempt``. The caller's
``response.content`` stays aiohttp's own ``StreamReader``, with its whole API (every keyword argument,
``MultipartReader``, ``isinstance``), because the attempt reads the body where aiohttp feeds it into that reader:
aiohttp's parsers (the C one too) call ``feed_data``/``feed_eof``/``set_exception`` on it by ordinary attribute
lookup, after aiohttp's own decompression. ``StreamReader`` has ``__slots__``, so no instance attribute can stand in
for those methods: for the body's length the reader takes a subclass of its own class that adds no state (so the
switch is allowed, and undone at the end) and shows each chunk to the attempt as it arrives, after handing it to
aiohttp's method with the same arguments. Nothing is buffered, copied or changed, and nothing of the hook's
raises into aiohttp; readers of unmeasured calls are untouched.

So time to first chunk measures a chunk's arrival, not the caller's read, and a caller that reads late or never
still has its call measured: what aiohttp buffered before ``_request`` returned is shown at once, and a body
already finished then ends the attempt. The attempt ends at the body's end, fails on the error aiohttp puts into
the reader (a lost connection, a read timeout, a bad encoding), and is abandoned when the caller releases or closes
the response before the body arrived whole (a timeout if the request's total timeout expired). With
``auto_decompress=False`` the attempt is told the body is encoded (``Attempt.answered`` decides what it reads).
``raise_for_status`` raises inside ``_request``: its ``ClientResponseError`` still gives the attempt the answer's
status and rate-limit headers. A request made under OpenTelemetry's ``suppress_instrumentation`` or
``suppress_http_instrumentation`` is not measured.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .call import SENDING, Attempt

logger = logging.getLogger(__name__)
_OURS = "_self_otel_llm_metrics"  # on our wrapt wrappers
_ATTEMPT = "_otel_llm_metrics_attempt"
_UNTAP = "_otel_llm_metrics_untap"
CurrentHook = Callable[[], Any]  # () -> hook.Hook | None
Answer = tuple[int, list[tuple[bytes, bytes]]]


_active = False  # post-import hooks cannot be removed: registered once, they patch only while active
_registered = False
_current: CurrentHook = lambda: None  # noqa: E731 - set by patch()


def patch(current: CurrentHook) -> list[str]:
    """Measure aiohttp's sessions, now or when it is imported (wrapt's post-import hook); names it if installed."""
    global _current, _active, _registered
    _current, _active = current, True
    if not _registered:
        import wrapt

        _registered = True
        wrapt.register_post_import_hook(_patch_module, "aiohttp")  # at once if imported already
    elif "aiohttp" in sys.modules:
        _patch_module(sys.modules["aiohttp"])
    return ["aiohttp"] if importlib.util.find_spec("aiohttp") is not None else []


def _patch_module(aiohttp: Any) -> None:
    if not _active:
        return
    try:
        import wrapt

        session, response = aiohttp.ClientSession, aiohttp.ClientResponse
        for owner, name, wrapper in ((session, "_request", _request(_Aiohttp(aiohttp))),
                                     (response, "release", _leaving), (response, "close", _leaving)):
            if not getattr(owner.__dict__.get(name), _OURS, False):
                wrapt.wrap_function_wrapper(owner, name, wrapper)
                setattr(owner.__dict__[name], _OURS, True)
    except Exception:  # an aiohttp we do not know: its calls stay unmeasured, the app runs
        logger.warning("otel_llm_metrics: could not measure LLM calls made with aiohttp", exc_info=True)


def unpatch() -> None:
    """Put aiohttp's methods back; a reader still being fed keeps measuring its attempt to its end."""
    global _active
    _active = False
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return
    from opentelemetry.instrumentation.utils import unwrap

    for owner, name in ((aiohttp.ClientSession, "_request"), (aiohttp.ClientResponse, "release"),
                        (aiohttp.ClientResponse, "close")):
        if getattr(owner.__dict__.get(name), _OURS, False):
            unwrap(owner, name)


class _Aiohttp:
    """The aiohttp types the hook recognises, looked up once at patch time."""

    def __init__(self, aiohttp: Any) -> None:
        self.reader = aiohttp.StreamReader
        self.empty = aiohttp.streams.EmptyStreamReader
        self.response_error = aiohttp.ClientResponseError
        self.unparsed = aiohttp.http_exceptions.HttpProcessingError  # aiohttp could not parse the answer
        self.enabled = _instrumentation_enabled()
        # aiohttp calls feed_data(data, size) positionally: a tap of that very signature is the cheapest (no
        # *args packing per chunk); a reader whose signature differs gets the generic one, never a TypeError
        self.exact = list(inspect.signature(self.reader.feed_data).parameters) == ["self", "data", "size"]


def _instrumentation_enabled() -> Callable[[], bool]:
    """OpenTelemetry's check of ``suppress_instrumentation``/``suppress_http_instrumentation`` in the context."""
    try:
        from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
    except ImportError:  # an opentelemetry-instrumentation without it: nothing to honour
        return lambda: True
    return is_http_instrumentation_enabled


def _attempt(current: CurrentHook, enabled: Callable[[], bool], session: Any, method: str, url: Any,
             kwargs: dict) -> Attempt | None:
    hook = current()
    if hook is None or method.upper() != "POST" or SENDING.get() or not enabled():
        return None
    try:
        url = session._build_url(url) if hasattr(session, "_build_url") else url
        if isinstance(url, str):
            from yarl import URL

            url = URL(url)
        body = kwargs.get("data")
        payload = kwargs.get("json")
        model = payload.get("model") if isinstance(payload, dict) else None
        return hook.attempt("POST", url.scheme, url.host or "", url.port, url.path,
                            body if isinstance(body, bytes) else None, model)
    except Exception:
        return None


def _request(kinds: _Aiohttp) -> Callable[..., Any]:
    """A wrapt wrapper of ``ClientSession._request(method, str_or_url, **kwargs)``."""
    def request(original: Callable[..., Awaitable[Any]], session: Any, args: tuple, kwargs: dict) -> Any:
        try:
            method, str_or_url = args
        except ValueError:  # called in a way aiohttp itself never does: straight through
            return original(*args, **kwargs)
        attempt = _attempt(_current, kinds.enabled, session, method, str_or_url, kwargs)
        if attempt is None:
            return original(*args, **kwargs)
        return _measured(original, session, args, kwargs, attempt, kinds)

    return request


async def _measured(original: Callable[..., Awaitable[Any]], session: Any, args: tuple, kwargs: dict,
                    attempt: Attempt, kinds: _Aiohttp) -> Any:
    try:
        response = await original(*args, **kwargs)
    except BaseException as error:
        answer = _answer_in(error, kinds)
        if answer is not None:  # raise_for_status: the provider answered, with a status and headers
            attempt.answered(*answer)
        attempt.failed(error)
        raise
    attempt.answered(response.status, list(response.raw_headers), decoded=_decoded(session, kwargs))
    response.__dict__[_ATTEMPT] = attempt  # ClientResponse has no __slots__: every response has a __dict__
    _watch(response.content, attempt, kinds)
    return response


def _decoded(session: Any, kwargs: dict) -> bool:
    """Whether aiohttp decompresses the body before its reader gets it (else the attempt decompresses apart)."""
    auto = kwargs.get("auto_decompress")
    return bool(getattr(session, "auto_decompress", True) if auto is None else auto)


def _answer_in(error: BaseException, kinds: _Aiohttp) -> Answer | None:
    """The status and raw headers of the answer a ``ClientResponseError`` was raised for (``raise_for_status``);
    None for other errors, and for an answer aiohttp could not parse (its status is aiohttp's, not the provider's)."""
    try:
        if not isinstance(error, kinds.response_error) or isinstance(error.__cause__, kinds.unparsed):
            return None
        status = error.status
        if not isinstance(status, int) or status < 100:  # TooManyRedirects and the like: no answer of its own
            return None
        headers = error.headers
        pairs = headers.items() if hasattr(headers, "items") else headers or ()
        return status, [(_raw(name), _raw(value)) for name, value in pairs]
    except Exception:
        return None


def _raw(text: str | bytes) -> bytes:
    """A header as it came (aiohttp decodes them as UTF-8 with surrogateescape)."""
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)


def _watch(reader: Any, attempt: Attempt, kinds: _Aiohttp) -> None:
    """Show ``attempt`` the body as aiohttp feeds it to ``reader``: what it holds already, then each chunk."""
    try:
        kind = type(reader)
        if not issubclass(kind, kinds.reader) or issubclass(kind, kinds.empty):  # no body, or a reader unknown
            attempt.end()
            return
        offset = reader._buffer_offset  # not 0 only if a raise_for_status callback read part of it
        for data in reader._buffer:
            attempt.chunk(data[offset:] if offset else data)
            offset = 0
        error = reader.exception()
        if error is not None:
            attempt.failed(error)
        elif reader.is_eof():
            attempt.end()
        else:
            reader.__class__ = _tapped(kind, attempt, kinds.exact and kind.feed_data is kinds.reader.feed_data)
    except Exception:  # an aiohttp whose reader we cannot watch: the attempt counts, its body unread
        logger.debug("otel_llm_metrics: an aiohttp answer's body was left unmeasured", exc_info=True)
        attempt.end()


def _tapped(base: type, attempt: Attempt, exact: bool = True) -> type:
    """A subclass of the reader's class, made per response: a slotted reader has no room for its attempt, and a
    subclass adding no slots is one an instance may switch to and back. Its methods call ``base``'s with the
    arguments aiohttp gave (``exact``: ``base.feed_data`` is ``(self, data, size=0)``), and never raise anything
    of the hook's into aiohttp."""
    feed_data, feed_eof, set_exception = base.feed_data, base.feed_eof, base.set_exception
    watched: Attempt | None = attempt

    def untap(reader: Any) -> Attempt | None:
        """The reader back to its own class; the attempt out of this class (freed only by the cyclic GC)."""
        nonlocal watched
        reader.__class__ = base
        found, watched = watched, None
        return found

    class StreamReader(base):  # type: ignore[misc,valid-type]  # named as aiohttp's: its repr stays the same
        __slots__ = ()

        if exact:
            def feed_data(self, data: bytes, size: int = 0) -> Any:
                more = feed_data(self, data, size)
                try:
                    watched.chunk(data)  # type: ignore[union-attr]
                except Exception:
                    pass  # Attempt.chunk logs its own failures; this only guards aiohttp's parser
                return more
        else:
            def feed_data(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
                more = feed_data(self, data, *args, **kwargs)
                try:
                    watched.chunk(data)  # type: ignore[union-attr]
                except Exception:
                    pass
                return more

        def feed_eof(self, *args: Any, **kwargs: Any) -> Any:
            ended = untap(self)
            try:
                return feed_eof(self, *args, **kwargs)
            finally:
                _end(ended, None)

        def set_exception(self, exc: BaseException, *args: Any, **kwargs: Any) -> Any:
            ended = untap(self)
            try:
                return set_exception(self, exc, *args, **kwargs)
            finally:
                _end(ended, exc)

    StreamReader.__qualname__ = base.__qualname__
    StreamReader.__module__ = base.__module__
    setattr(StreamReader, _UNTAP, staticmethod(untap))
    return StreamReader


def _end(attempt: Attempt | None, error: BaseException | None) -> None:
    """The body's end (``error`` None) or its failure, as aiohttp told the reader."""
    try:
        if attempt is None or attempt.ended:
            return
        if error is None:
            attempt.end()
        else:
            attempt.failed(error)
    except Exception:
        logger.debug("otel_llm_metrics: could not end an aiohttp attempt", exc_info=True)


def _leaving(original: Callable[..., Any], response: Any, args: tuple, kwargs: dict) -> Any:
    """A wrapt wrapper of ``release``/``close`` of a response: a caller leaving before the body's end abandons its
    attempt, unless aiohttp's total timeout expired (it reaches the caller's read, never the reader): then it timed
    out."""
    try:
        attempt = response.__dict__.pop(_ATTEMPT, None)
        if attempt is not None and not attempt.ended:
            reader = getattr(response, "content", None)
            untap = getattr(type(reader), _UNTAP, None)
            if untap is not None:
                untap(reader)
            error = _timed_out(response)
            if error is not None:
                attempt.failed(error)
            else:
                attempt.end(body_complete=False)
    except Exception:
        logger.debug("otel_llm_metrics: could not end an aiohttp attempt", exc_info=True)
    return original(*args, **kwargs)


def _timed_out(response: Any) -> BaseException | None:
    """The error of the response's total timeout, if it expired (``assert_timeout`` is aiohttp's own check)."""
    timer = getattr(response, "_timer", None)
    try:
        if timer is not None:
            timer.assert_timeout()
    except asyncio.TimeoutError as error:
        return error
    return None
