"""JSON-lines logs (``OTEL_LLM_METRICS_LOG_FORMAT=json``): one object per line, for shipped container logs.

Each line has ``time`` (RFC 3339, UTC, ms), ``level``, ``logger`` and ``message``; ``exception`` and
``stack`` when the record has them; ``trace_id`` and ``span_id`` from the span current where the record
was made; ``request_id`` and ``http.route`` of the request being served. Nothing is read or added
unless it is there, and formatting never raises: a record whose arguments do not fit still gives a line.

With ``json`` on, ``install()`` (called once per process by ``runtime.install``):

- gives the root logger's console handler (a ``StreamHandler`` to stdout or stderr) this formatter, or
  adds one on stderr when it has none, so a line is never printed twice;
- does the same for the servers' own console handlers (uvicorn, gunicorn, hypercorn), now and each
  time the server sets its logging up (uvicorn's ``Config.configure_logging``, gunicorn's
  ``Logger.setup``, hypercorn's ``Logger``), when the handler still has the server's own formatter:
  a ``--log-config`` of yours keeps its formatters. A server logger whose records reach the root
  anyway (hypercorn.error) loses its console handler instead, so its lines come once;
- lets ``otel_llm_metrics`` INFO lines through (where metrics are served), which would otherwise be
  printed as plain text.

Levels stay as they are: this changes how lines look, never which lines are written.

The request: the middleware sets ``REQUEST`` to its per-request recorder (an object with ``request_id``
bytes and ``route_now()``) for the time it serves a request, only when JSON logs
are on; by default it pays one ``is None`` test per request.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

from opentelemetry.trace import get_current_span

# The per-request recorder of the request being served (middleware.Exchange), or None.
REQUEST: ContextVar[Any] = ContextVar("otel_llm_metrics.log_request", default=None)

_MARK = "_otel_llm_metrics_json"  # on handlers we added or restyled, and on server methods we wrapped
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "gunicorn.error",
                   "gunicorn.access", "hypercorn.error", "hypercorn.access")
_HYPERCORN_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
# Where each server sets its loggers up: (module, class, method) wrapped to restyle right after.
_SERVER_SETUPS = (("uvicorn.config", "Config", "configure_logging"), ("gunicorn.glogging", "Logger", "setup"),
                  ("hypercorn.logging", "Logger", "__init__"))
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_installed = False
_watching = False


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages and tracebacks are escaped)."""

    _second: tuple[int, str] = (-1, "")  # the last second formatted, and its text: one strftime a second

    def format(self, record: logging.LogRecord) -> str:
        try:
            return _dumps(self._fields(record))
        except Exception as exc:  # never into the caller: a line that says what went wrong
            created = getattr(record, "created", None) or time.time()
            return _dumps({"time": _utc(created), "level": _safe_str(getattr(record, "levelname", "?")),
                           "logger": _safe_str(getattr(record, "name", "?")),
                           "message": _safe_str(getattr(record, "msg", "")),
                           "format_error": f"{type(exc).__name__}: {_safe_str(exc)}"})

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        created = record.created
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        fields: dict[str, Any] = {"time": f"{cached[1]}.{int(record.msecs):03d}Z", "level": record.levelname,
                                  "logger": record.name}
        try:
            fields["message"] = record.getMessage()
        except Exception as exc:  # arguments that do not fit the message: keep both, say why
            fields["message"] = _safe_str(record.msg)
            fields["args"] = _safe_repr(record.args)
            fields["format_error"] = f"{type(exc).__name__}: {_safe_str(exc)}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        context = get_current_span().get_span_context()
        if context.is_valid:
            fields["trace_id"] = format(context.trace_id, "032x")
            fields["span_id"] = format(context.span_id, "016x")
        request = REQUEST.get()
        if request is not None:
            _add_request(fields, request)
        return fields


def _add_request(fields: dict[str, Any], request: Any) -> None:  # noqa: ANN401 - middleware.Exchange
    """The request id, and the route once the router has matched (read from the scope before we record it)."""
    request_id = getattr(request, "request_id", None)
    if request_id:
        fields["request_id"] = request_id.decode("latin-1") if isinstance(request_id, bytes) else str(request_id)
    route_now = getattr(request, "route_now", None)
    route = route_now() if route_now is not None else getattr(request, "route", None)
    if route is not None:
        fields["http.route"] = route


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return object.__repr__(value)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return object.__repr__(value)


# -- wiring -------------------------------------------------------------------------------------------------
def install() -> None:
    """JSON lines for the root logger and the servers' loggers, now and whenever a server sets its own up."""
    global _installed
    if _installed:
        return
    _installed = True
    formatter = JsonFormatter()
    root = logging.getLogger()
    consoles = [handler for handler in root.handlers if _is_console(handler)]
    for handler in consoles:
        _restyle(handler, formatter)
    if not consoles:
        handler = logging.StreamHandler(sys.stderr)
        _restyle(handler, formatter)
        root.addHandler(handler)
    ours = logging.getLogger("otel_llm_metrics")
    if ours.level == logging.NOTSET and not ours.isEnabledFor(logging.INFO):
        ours.setLevel(logging.INFO)  # console.announce's lines, as JSON rather than plain text
    restyle_servers()
    _watch_servers()


def restyle_servers() -> None:
    """Give the servers' console handlers that still carry the server's own formatter the JSON one."""
    if not _installed:  # the hooks stay placed; they act only while JSON logs are on
        return
    root = logging.getLogger()
    formatter = next((h.formatter for h in root.handlers if getattr(h, _MARK, False)), None) or JsonFormatter()
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if getattr(handler, _MARK, False) or not _is_console(handler) or not _servers_own(handler):
                continue
            if _reaches_root(logger):  # the root's handler prints it already: one line, not two
                logger.removeHandler(handler)
            else:
                _restyle(handler, formatter)


def _restyle(handler: logging.Handler, formatter: logging.Formatter) -> None:
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)


def _is_console(handler: logging.Handler) -> bool:
    """A handler writing to this process's stdout or stderr (not a file, not a test's buffer)."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    stream = handler.stream
    return stream is not None and stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


def _servers_own(handler: logging.Handler) -> bool:
    """Set up by the server itself, not by a log config of yours (which keeps its formatters)."""
    formatter = handler.formatter
    return (formatter is None or type(formatter).__module__.startswith("uvicorn.")  # Default/AccessFormatter
            or getattr(handler, "_gunicorn", False)  # gunicorn marks the handlers it makes
            or (type(formatter) is logging.Formatter and formatter._fmt == _HYPERCORN_FORMAT))


def _reaches_root(logger: logging.Logger) -> bool:
    node: logging.Logger | None = logger
    while node is not None and node.parent is not None:
        if not node.propagate:
            return False
        node = node.parent
    return any(getattr(handler, _MARK, False) for handler in logging.getLogger().handlers)


def _watch_servers() -> None:
    """Restyle again right after each server sets its logging up (wrapt's post-import hooks: no import here)."""
    global _watching
    if _watching:
        return
    _watching = True
    import wrapt

    for module, owner, method in _SERVER_SETUPS:
        wrapt.register_post_import_hook(functools.partial(_wrap_setup, owner, method), module)


def _wrap_setup(owner_name: str, method: str, module: Any) -> None:  # noqa: ANN401 - a module
    try:
        owner = getattr(module, owner_name)
        original = getattr(owner, method)
        if getattr(original, _MARK, False):
            return

        @functools.wraps(original)
        def set_up_then_restyle(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            result = original(*args, **kwargs)
            try:
                restyle_servers()
            except Exception:  # the server starts whatever happens here
                logging.getLogger(__name__).debug("otel_llm_metrics: could not restyle", exc_info=True)
            return result

        setattr(set_up_then_restyle, _MARK, True)
        setattr(owner, method, set_up_then_restyle)
    except Exception:  # another version of the server: its lines stay as it writes them
        logging.getLogger(__name__).debug("otel_llm_metrics: no log hook in %s", module, exc_info=True)
