"""AWS Bedrock calls made through boto3/botocore (and aiobotocore's sync parts are not these), measured at the wire.

botocore sends each HTTP attempt, its own retries included, through ``Endpoint._send`` (the request signed, the
urllib3 response back with its body unread when the operation streams, read already when it does not). For a
``bedrock-runtime`` request whose path is a Bedrock shape (``llm.endpoints``) the attempt gets an ``Attempt``:

- a body botocore read inside ``_send`` (Converse, InvokeModel errors...) is shown to it at once;
- a streamed body (ConverseStream, InvokeModel's ``body``, InvokeModelWithResponseStream, and an error status
  on those, read while botocore parses it) is shown as botocore reads it: the urllib3 response becomes, for that
  response only, a subclass of its own class whose ``read``, ``read1`` and ``read_chunked`` hand each piece to
  the attempt and return it unchanged; its class is put back when the body ends or is closed.

``Endpoint._send_request``, which runs all attempts of one operation, opens an ``operation.Operation``, so a
retried 429 or 5xx and the attempt that follows are one operation (``client.call``). Bedrock's answers are read
by ``llm.bedrock.BedrockReader``. Nothing here raises into botocore; requests to other services, calls under
OpenTelemetry's ``suppress_instrumentation``, and responses a ``before-send`` handler made (no wire) go
straight through.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.context import get_current

from ..error_types import CONNECTION_ERROR
from ..llm.bedrock import BedrockReader
from ..llm.endpoints import BEDROCK
from . import operation as operations
from .call import SENDING, Attempt

try:  # the key is_instrumentation_enabled() reads, read straight from the context
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _ALL
except ImportError:
    _ALL = "suppress_instrumentation"

logger = logging.getLogger(__name__)
MODULE = "botocore.endpoint"
SERVICE = "bedrock-runtime"  # botocore's endpoint prefix for Bedrock's runtime API
CurrentHook = Callable[[], Any]  # () -> hook.Hook | None
_TAP = "_otel_llm_metrics_tap"

_current: CurrentHook | None = None
_registered = False  # post-import hooks cannot be removed: registered once, they patch only while active
_patched: list[tuple[type, str, Any, Any]] = []  # (class, attribute, its own function, our wrapper)


# -- installing ------------------------------------------------------------------------------------
def patch(current: CurrentHook) -> list[str]:
    """Measure Bedrock calls in botocore, imported now or later; names it when it is installed."""
    global _current, _registered
    _current = current
    if not _registered:
        _registered = True
        import wrapt

        wrapt.register_post_import_hook(_patch_module, MODULE)  # at once when already imported
    else:
        module = sys.modules.get(MODULE)
        if module is not None:
            _patch_module(module)
    return ["botocore"] if MODULE in sys.modules or importlib.util.find_spec("botocore") is not None else []


def unpatch() -> None:
    """Put botocore's own methods back (where ours is still the outermost wrapper)."""
    global _current
    _current = None
    while _patched:
        owner, name, original, wrapper = _patched.pop()
        if owner.__dict__.get(name) is wrapper:
            setattr(owner, name, original)


def _patch_module(module: Any) -> None:
    if _current is None:
        return
    try:
        import wrapt

        endpoint = module.Endpoint
        for name, wrapper in (("_send_request", _send_request), ("_send", _send)):
            original = endpoint.__dict__.get(name)
            if original is None or any(entry[0] is endpoint and entry[1] == name for entry in _patched):
                continue
            wrapt.wrap_function_wrapper(endpoint, name, wrapper)
            _patched.append((endpoint, name, original, endpoint.__dict__[name]))
    except Exception:  # a botocore we do not know: its calls stay unmeasured, the app runs
        logger.warning("otel_llm_metrics: could not measure Bedrock calls made with botocore", exc_info=True)


# -- per operation and per attempt -------------------------------------------------------------------
def _send_request(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    """All attempts of one botocore operation: one ``Operation`` (a retried failure continues into the next)."""
    if _current is None or getattr(instance, "_endpoint_prefix", None) != SERVICE or _current() is None:
        return wrapped(*args, **kwargs)
    owner = operations.Operation()
    token = operations.CURRENT.set(owner)
    try:
        return wrapped(*args, **kwargs)
    finally:
        operations.CURRENT.reset(token)
        owner.close()


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    """One HTTP attempt: botocore's urllib3 session sends it and returns the answer."""
    attempt = _attempt(instance, args[0] if args else kwargs.get("request"))
    if attempt is None:
        return wrapped(*args, **kwargs)
    sending = SENDING.set(True)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as error:
        _failed(attempt, error)
        raise
    finally:
        SENDING.reset(sending)
    _answered(attempt, response)
    return response


def _attempt(endpoint: Any, request: Any) -> Attempt | None:
    """An Attempt for a Bedrock runtime request, else None; never raises."""
    try:
        current = _current
        hook = current() if current is not None else None
        if hook is None or getattr(endpoint, "_endpoint_prefix", None) != SERVICE or request is None \
                or request.method != "POST" or SENDING.get() or _suppressed():
            return None
        url = urlsplit(request.url)
        body = request.body if isinstance(request.body, bytes) else None  # a file-like body: the model is in the path
        attempt = hook.attempt("POST", url.scheme, url.hostname or "", url.port, url.path, body)
        if attempt is not None and attempt.exchange.endpoint.dialect != BEDROCK:
            return None  # another shape under bedrock-runtime: not ours to read
        return attempt
    except Exception:
        logger.debug("otel_llm_metrics: a Bedrock request was left unmeasured", exc_info=True)
        return None


def _suppressed() -> bool:
    """OpenTelemetry's ``suppress_instrumentation`` is on. Not ``suppress_http_instrumentation``: that one is for
    HTTP client instrumentations, and opentelemetry-instrumentation-botocore sets it around every send (so urllib3's
    spans do not double its own); ours measures Bedrock's API, as botocore's does, and would see nothing."""
    context = get_current()
    if not context:
        return False
    return bool(context.get(_ALL) or context.get("suppress_instrumentation"))


def _failed(attempt: Attempt, error: BaseException) -> None:
    """botocore's connection errors (``EndpointConnectionError``, ``ConnectionClosedError``) are connection errors."""
    try:
        name = type(error).__name__
        if attempt.error_type is None and "Timeout" not in name and any(
                base.__name__ in ("HTTPClientError", "ConnectionError") for base in type(error).__mro__[1:]):
            attempt.error_type = CONNECTION_ERROR
    except Exception:
        pass
    attempt.failed(error)


def _answered(attempt: Attempt, response: Any) -> None:
    """The status and headers arrived: read the body now (botocore read it) or as botocore reads it."""
    try:
        raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()]
        attempt.answered(response.status_code, raw_headers)  # Bedrock's reader reads its token headers too
        content = response.__dict__.get("_content")
        if content is not None:  # read inside the send (an operation that does not stream)
            attempt.chunk(content)
            _end(attempt)
            return
        raw = response.raw
        base = type(raw)
        if hasattr(raw, "__dict__") and callable(getattr(raw, "read_chunked", None)):
            raw.__dict__[_TAP] = attempt
            raw.__class__ = _tapped(base)
            # A stream its caller drops unread (never closed) is abandoned when collected, not lost.
            weakref.finalize(raw, _end, attempt, False).atexit = False
            return
    except Exception:
        logger.debug("otel_llm_metrics: a Bedrock answer could not be followed", exc_info=True)
    _end(attempt)  # a body we cannot follow: its timing, as far as the headers


def _end(attempt: Attempt, body_complete: bool = True) -> None:
    """The body ended: a stream's own error (an exception event, a cut frame) is the attempt's error type."""
    if attempt.ended:
        return
    try:
        reader = attempt.exchange.parser
        if isinstance(reader, BedrockReader):
            reader.finish()
            if attempt.error_type is None and reader.error_type is not None:
                attempt.error_type = reader.error_type
    except Exception:
        pass
    attempt.end(body_complete)


# -- the body, as botocore reads it ----------------------------------------------------------------
_TAPPED: dict[type, type] = {}


def _tapped(base: type) -> type:
    """``base`` (a urllib3 response class) showing every piece read to the response's attempt; made once."""
    found = _TAPPED.get(base)
    if found is None:
        found = _TAPPED[base] = _make_tapped(base)
    return found


def _release(response: Any, base: type) -> Attempt | None:
    """The response's attempt, taken once; its class is its own again."""
    attempt = response.__dict__.pop(_TAP, None)
    if response.__class__ is not base:
        response.__class__ = base
    return attempt


def _make_tapped(base: type) -> type:
    """A subclass adding methods only: the instance's layout and ``isinstance`` are unchanged."""

    def after(response: Any, data: Any, amount: Any) -> None:
        attempt = response.__dict__.get(_TAP)
        if attempt is None:
            return
        if data:
            attempt.chunk(bytes(data))
            if _last_event(attempt):
                _end_response(response, base)
                return
        if not data or amount is None or getattr(response, "length_remaining", None) == 0:
            _end_response(response, base)

    def failed(response: Any, error: BaseException) -> None:
        attempt = _release(response, base)
        if attempt is not None:
            if isinstance(error, GeneratorExit):  # botocore's reader stopped early
                _end(attempt, body_complete=False)
            else:
                _failed(attempt, error)

    class Tapped(base):  # type: ignore[valid-type, misc]
        __slots__ = ()

        def read(self, amt: Any = None, *args: Any, **kwargs: Any) -> Any:
            try:
                data = base.read(self, amt, *args, **kwargs)
            except BaseException as error:
                failed(self, error)
                raise
            after(self, data, amt)
            return data

        def read1(self, amt: Any = None, *args: Any, **kwargs: Any) -> Any:
            try:
                data = base.read1(self, amt, *args, **kwargs)
            except BaseException as error:
                failed(self, error)
                raise
            after(self, data, amt)
            return data

        def read_chunked(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
            attempt = self.__dict__.get(_TAP)
            try:
                for piece in base.read_chunked(self, *args, **kwargs):
                    if attempt is not None and piece:
                        attempt.chunk(piece)
                        if _last_event(attempt):
                            _end_response(self, base)
                            attempt = None
                    yield piece
            except BaseException as error:
                failed(self, error)
                raise
            _end_response(self, base)

        def close(self) -> None:
            attempt = _release(self, base)
            try:
                base.close(self)
            finally:
                if attempt is not None:
                    _end(attempt, body_complete=False)

    Tapped.__name__ = Tapped.__qualname__ = base.__name__
    Tapped.__module__ = base.__module__
    return Tapped


def _last_event(attempt: Attempt) -> bool:
    """A stream's last event arrived (``metadata``, the invocation metrics, an exception): the answer is whole.

    botocore raises an exception event into its caller, who may never read on: the attempt ends here, not at a
    close that may never come."""
    reader = attempt.exchange.parser
    return reader is not None and reader.streamed_format and (reader.done or reader.error_event)  # type: ignore


def _end_response(response: Any, base: type) -> None:
    attempt = _release(response, base)
    if attempt is not None:
        _end(attempt)
