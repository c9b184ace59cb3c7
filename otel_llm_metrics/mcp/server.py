"""The served side of MCP: one ``Served`` per HTTP request that turned out to carry JSON-RPC.

The middleware calls ``begin`` with the first body chunk of a POST; a body that is not JSON (or JSON without a
``"jsonrpc"`` member) costs a byte test and a substring search, and nothing more. Once a body is JSON-RPC, the
middleware routes the server's ``send`` through ``Served.send``, which reads the answer as it passes (a JSON body,
or the SSE stream that carries the response event among notifications) and hands every message on unchanged.
An operation ends at its response event, not at the end of the stream; a notification ends at its
acknowledgement (the response's start). Sessions: an initialize answered with an ``Mcp-Session-Id`` opens one,
each request carrying the id refreshes it, its DELETE (or a 404 for it) closes it.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

from ..catalogue import CLIENT_CANCELLED, OTHER
from . import jsonrpc
from .jsonrpc import Body, EventStream, Message, matched, outcome, read_answers, read_messages
from .stats import McpStats, operation_key

logger = logging.getLogger(__name__)
SESSION_HEADER = b"mcp-session-id"
VERSION_HEADER = b"mcp-protocol-version"
_NEEDLE = b'"jsonrpc"'
_KEEP = len(_NEEDLE) - 1
_logged = False
LEADS = jsonrpc.LEADS  # first bytes a JSON-RPC body may start with: the middleware's inline pre-test
sniff = jsonrpc.sniff


def _log_failure() -> None:
    global _logged
    if not _logged:
        _logged = True
        logger.exception("otel_llm_metrics could not read an MCP exchange; further failures are not logged")


def begin(stats: McpStats, scope: dict, start: float, first: bytes, more: bool, verdict: int | None = None
          ) -> Served | None:
    """A ``Served`` for a POST body that is (or may still turn out to be) JSON-RPC, else None."""
    if verdict is None:
        verdict = jsonrpc.sniff(first, more)
    if verdict == jsonrpc.NO:
        return None
    served = Served(stats, scope, start)
    served.request(first, more, verdict)
    return served if served.live else None


def deleted(stats: McpStats, scope: dict, status: int, at: float) -> None:
    """A DELETE answered: the session it names (if we know it) is over; a 404 says it was over already."""
    if status >= 300 and status != 404:
        return
    for name, value in scope.get("headers", ()):
        if name == SESSION_HEADER:
            stats.server_sessions.end(value, at)
            return


class Served:
    """What one MCP request carried and how it was answered, recorded as each answer passes."""

    send_installed = False
    decided = False
    status = 0
    reader: EventStream | Body | None = None
    session_id: bytes | None = None
    header_version: str | None = None
    session_version: str | None = None

    def __init__(self, stats: McpStats, scope: dict, start: float) -> None:
        self.stats = stats
        self.scope = scope
        self.start = start
        self.body = Body()
        self.tail = b""
        self.live = True
        self.requests: dict[Any, Message] = {}  # by JSON-RPC id, until answered
        self.notifications: list[Message] = []  # until acknowledged
        self.initialize: Message | None = None
        self.app_send: Any = None

    # -- the request ------------------------------------------------------------------------------
    def request(self, chunk: bytes, more: bool, verdict: int | None = None) -> None:
        """A request body chunk; at the last one the messages are read."""
        try:
            if not self.decided:
                if verdict is None:  # a later chunk of a body cut before its "jsonrpc" (looked for across the cut)
                    verdict = jsonrpc.YES if _NEEDLE in self.tail + chunk[:_KEEP] or _NEEDLE in chunk else jsonrpc.MAYBE
                if verdict == jsonrpc.MAYBE:
                    self.tail = chunk[-_KEEP:]
                else:
                    self._decided()
            self.body.feed(chunk)
            if more:
                if not self.decided and self.body.size > jsonrpc.MAX_MESSAGE:
                    self.live = False
                return
            whole = self.body.whole() if self.decided else None
            self.body = Body()
            if whole is None:
                self.live = False
                return
            self._read(read_messages(whole))
        except Exception:
            self.live = False
            _log_failure()

    def _decided(self) -> None:
        self.decided = True
        sessions = self.stats.server_sessions
        for name, value in self.scope.get("headers", ()):
            if name == SESSION_HEADER:
                self.session_id = value
            elif name == VERSION_HEADER:
                self.header_version = value.decode("latin-1")
        if self.session_id is not None:
            self.session_version = sessions.touch(self.session_id, self.start)

    def _read(self, messages: list[Message]) -> None:
        if not messages:
            self.live = False
            return
        for message in messages:
            if message.notification:
                self.notifications.append(message)
            else:
                self.requests[message.id] = message
                if message.method == "initialize":
                    self.initialize = message

    # -- the answer -------------------------------------------------------------------------------
    def wrap(self, send: Any) -> Any:
        """The server's ``send`` to call after reading each message (installed once the body is JSON-RPC)."""
        self.app_send = send
        self.send_installed = True
        return self.send

    def send(self, message: dict) -> Any:
        if self.live:
            try:
                self._sent(message)
            except Exception:
                self.live = False
                _log_failure()
        return self.app_send(message)

    def _sent(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "http.response.body":
            reader = self.reader
            if reader is None:
                return
            body = message.get("body") or b""
            more = message.get("more_body", False)
            if type(reader) is EventStream:
                answers = reader.feed(body) if body else ()
                if not more:
                    reader.end()
            else:
                reader.feed(body)
                if more:
                    return
                whole = reader.whole()
                answers = read_answers(whole) if whole else ()
            if answers:
                self._answered(answers, perf_counter())
            if not more:
                self.reader = None
        elif kind == "http.response.start":
            self._started(message)

    def _started(self, message: dict) -> None:
        now = perf_counter()
        status = self.status = message.get("status", 0)
        content_type = session_id = None
        for name, value in message.get("headers") or ():
            if name == b"content-type":
                content_type = value
            elif name == SESSION_HEADER:
                session_id = value
        sessions = self.stats.server_sessions
        if self.initialize is not None and session_id and self.session_id is None and status < 300:
            self.session_id = session_id
            sessions.start(session_id, self.start, self.stats.version(self.initialize.version))
        elif status == 404 and self.session_id is not None:
            sessions.end(self.session_id, now)  # the server no longer knows the session
        if self.notifications:
            error_type = str(status) if status >= 500 else None
            for notification in self.notifications:
                self._record(notification, now, error_type, None)
            self.notifications = []
        if self.requests and status == 202:  # answered on another stream (the legacy HTTP+SSE transport): not ours
            self.requests = {}
        elif self.requests:
            self.reader = EventStream() if content_type and content_type.startswith(b"text/event-stream") else Body()

    def _answered(self, answers: Any, at: float) -> None:
        for request, answer in matched(self.requests, answers):
            error_type, status = outcome(answer.code, answer.tool_error, served=True)
            version = None
            if request is self.initialize and answer.version is not None:
                version = self.stats.version(answer.version)
                if self.session_id is not None:
                    self.stats.server_sessions.touch(self.session_id, self.start, version)
            self._record(request, at, error_type, status, version)

    def _record(self, message: Message, at: float, error_type: str | None, status: str | None,
                version: str | None = None) -> None:
        stats = self.stats
        tool, prompt, uri = stats.names(message.method, message.name, message.uri)
        if version is None:
            version = stats.version(self.header_version or message.version) or self.session_version
        key = operation_key(stats.method(message.method), tool, prompt, error_type, status, version,
                            self.scope.get("http_version"), uri)
        stats.server.get(key).duration.record(max(0.0, at - self.start))

    # -- the end ----------------------------------------------------------------------------------
    def finish(self, end: float, error: BaseException | None, disconnected: bool) -> None:
        """The HTTP exchange is over: what was never answered is recorded with why."""
        if not self.live or not (self.requests or self.notifications):
            return
        try:
            if disconnected or (error is not None and type(error).__name__ in ("CancelledError", "Cancelled")):
                error_type = CLIENT_CANCELLED
            elif error is not None:
                kind = type(error)
                error_type = kind.__qualname__ if kind.__module__ == "builtins" else \
                    f"{kind.__module__}.{kind.__qualname__}"
            elif self.status >= 500:
                error_type = str(self.status)
            elif self.status >= 400:
                error_type = None  # refused before any JSON-RPC answer (406, 400, 404 for a session): the caller's
            else:
                error_type = OTHER  # the answer ended without a response to it
            for message in (*self.notifications, *self.requests.values()):
                self._record(message, end, error_type, None)
            self.requests, self.notifications = {}, []
        except Exception:
            _log_failure()
