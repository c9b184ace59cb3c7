"""The calls-made side of MCP: one ``McpCall`` per HTTP request an MCP client sends over httpx or httpx2.

The httpx hook asks ``call_for`` about each request that is not an LLM call: a POST whose body is JSON-RPC, or a
DELETE that ends a session. An ``McpCall`` has the reading surface of the hook's LLM ``Attempt`` (``answered``,
``decoding``, ``chunk``, ``failed``, ``end``), so the same response streams and decoders show it the body as the
SDK reads it. An operation ends when its response event is read, even if the stream stays open; the SDK closing
the stream after it changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from time import perf_counter
from typing import Any

from ..catalogue import OTHER
from ..error_types import ABANDONED, error_type_of
from .jsonrpc import YES, Answer, Body, EventStream, Message, matched, outcome, read_answers, read_messages, sniff
from .stats import McpStats, for_gen_ai, operation_key

logger = logging.getLogger(__name__)
_logged = False


def _log_failure() -> None:
    global _logged
    if not _logged:
        _logged = True
        logger.exception("otel_llm_metrics could not read an MCP call; further failures are not logged")


def call_for(gen_ai: Any, request: Any) -> McpCall | None:
    """An McpCall for an MCP request (``request`` is an httpx/httpx2 Request), else None; never raises."""
    try:
        stats = for_gen_ai(gen_ai)
        if stats is None:
            return None
        if not stats.enabled:
            return None
        if request.method == "POST":
            try:
                content = request.content
            except Exception:  # a streamed upload: not an MCP client's message
                return None
            if not content or sniff(content, False) != YES:
                return None
            messages = read_messages(content)
            return McpCall(stats, request, messages) if messages else None
        session = request.headers.get("mcp-session-id")
        return McpCall(stats, request, [], deleting=session) if session else None
    except Exception:
        _log_failure()
        return None


class McpCall:
    """The JSON-RPC messages of one request sent, recorded as their answers are read."""

    status = 0
    reader: EventStream | Body | None = None
    http_version: str | None = None
    ended = False
    session_version: str | None = None

    def __init__(self, stats: McpStats, request: Any, messages: list[Message], deleting: str | None = None) -> None:
        self.start = perf_counter()
        self.stats = stats
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        self.host = url.host
        self.where = (stats.hosts(url.host), port)
        headers = request.headers
        self.deleting = deleting
        session = deleting or headers.get("mcp-session-id")
        self.session = (url.host, port, session) if session else None
        self.header_version = headers.get("mcp-protocol-version")
        self.requests = {m.id: m for m in messages if not m.notification}
        self.notifications = [m for m in messages if m.notification]
        self.initialize = next((m for m in messages if m.method == "initialize"), None)
        if self.session is not None and deleting is None:
            self.session_version = stats.client_sessions.touch(self.session, self.start)

    def response(self, response: Any) -> None:
        """The response object, before its body: the HTTP version it came over."""
        version = getattr(response, "http_version", None)
        if isinstance(version, str):
            self.http_version = version[5:] if version.startswith("HTTP/") else version

    # -- the Attempt reading surface --------------------------------------------------------------
    def answered(self, status: int, raw_headers: Iterable[Sequence[bytes]], decoded: bool = False) -> bool:
        """Status and headers arrived, as (name, value) pairs or httpx's own (name, lowercased name, value) triples
        (what the hook hands on, ``client.headers``); True when the body is content-encoded (read through the
        library's decoder)."""
        try:
            return self._answered(status, raw_headers, decoded)
        except Exception:
            self.requests, self.notifications = {}, []
            _log_failure()
            return False

    def _answered(self, status: int, raw_headers: Iterable[Sequence[bytes]], decoded: bool) -> bool:
        now = perf_counter()
        self.status = status
        content_type = session_id = None
        encoded = False
        for item in raw_headers:
            name, value = item[0].lower(), item[-1]
            if name == b"content-type":
                content_type = value.lower()
            elif name == b"mcp-session-id":
                session_id = value.decode("latin-1")
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                encoded = True
        sessions = self.stats.client_sessions
        if self.deleting is not None:
            if status < 300 or status in (404, 405):  # 405: the server keeps it, but this client is done with it
                sessions.end(self.session, now)
            return False
        if self.initialize is not None and session_id and status < 300:
            self.session = (self.host, self.where[1], session_id)
            sessions.start(self.session, self.start, self.stats.version(self.initialize.version), self.where)
        elif status == 404 and self.session is not None:
            sessions.end(self.session, now)  # the server no longer knows the session
        if self.notifications:
            error_type = str(status) if status >= 400 else None
            for notification in self.notifications:
                self._record(notification, now, error_type, None)
            self.notifications = []
        if self.requests and status == 202:  # answered on another stream (the legacy HTTP+SSE transport): not ours
            self.requests = {}
        elif self.requests:
            self.reader = EventStream() if content_type and content_type.startswith(b"text/event-stream") else Body()
        return encoded and not decoded

    def decoding(self) -> None:
        """The body arrives decoded through the library's decoder: nothing to change here."""

    def chunk(self, data: bytes) -> None:
        reader = self.reader
        if reader is None or not data:
            return
        try:
            if type(reader) is EventStream:
                answers = reader.feed(data)
                if answers:
                    self._answered_with(answers, perf_counter())
            else:
                reader.feed(data)
        except Exception:
            self.reader, self.requests = None, {}
            _log_failure()

    def failed(self, error: BaseException) -> None:
        self._close(error_type_of(error))

    def end(self, body_complete: bool = True) -> None:
        if self.ended:
            return
        reader = self.reader
        try:
            if type(reader) is Body and body_complete:
                whole = reader.whole()
                if whole:
                    self._answered_with(read_answers(whole), perf_counter())
        except Exception:
            _log_failure()
        if self.status >= 400:
            self._close(str(self.status))
        else:
            self._close(OTHER if body_complete else ABANDONED)

    # -- recording --------------------------------------------------------------------------------
    def _close(self, error_type: str) -> None:
        """Whatever is still unanswered ends now, with ``error_type``."""
        if self.ended:
            return
        self.ended = True
        self.reader = None
        try:
            now = perf_counter()
            for message in (*self.notifications, *self.requests.values()):
                self._record(message, now, error_type, None)
            self.requests, self.notifications = {}, []
        except Exception:
            _log_failure()

    def _answered_with(self, answers: list[Answer], at: float) -> None:
        for request, answer in matched(self.requests, answers):
            error_type, status = outcome(answer.code, answer.tool_error, served=False)
            version = None
            if request is self.initialize and answer.version is not None:
                version = self.stats.version(answer.version)
                if self.session is not None:
                    self.stats.client_sessions.touch(self.session, self.start, version)
            self._record(request, at, error_type, status, version)

    def _record(self, message: Message, at: float, error_type: str | None, status: str | None,
                version: str | None = None) -> None:
        stats = self.stats
        tool, prompt, uri = stats.names(message.method, message.name, message.uri)
        if version is None:
            version = stats.version(self.header_version or message.version) or self.session_version
        key = operation_key(stats.method(message.method), tool, prompt, error_type, status, version,
                            self.http_version, uri)
        stats.client.record((*key, *self.where), "duration", max(0.0, at - self.start))
