"""The MCP dialect: JSON-RPC messages read at the wire, in either direction, byte-split safe.

What is kept of a message is what the conventions name, never arguments or results: the method, the tool or
prompt name, the resource URI (opt-in), the id (to match the answer), the answer's error code, a tool result's
``isError`` and an initialize result's protocol version. Bodies are decoded by the C ``json`` module once
complete: a Python byte scanner would cost more per byte than decoding does. A body or SSE event larger than
``MAX_MESSAGE`` is not decoded (its operations end without an outcome); nothing here raises into the caller
for any input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

MAX_MESSAGE = 4 * 1024 * 1024  # bytes held for one request body or one answer (JSON body, or one SSE event)
_SNIFF_NEEDLE = b'"jsonrpc"'
_FAST = b'{"jsonrpc"'
_HEAD = 64
_LEAD = b" \t\r\n[{"
LEADS = frozenset((b" ", b"\t", b"\r", b"\n", b"[", b"{"))  # what a JSON-RPC body may start with
_FIRST_MEMBERS = (b'"jsonrpc"', b'"method"', b'"id"')
# On the served side these are the caller's mistakes, not the server's errors (the conventions' list).
CALLER_MISTAKES = frozenset((-32700, -32600, -32601, -32602, -32002))
TOOL_ERROR = "tool_error"
NAMED = {"tools/call": "tool", "prompts/get": "prompt"}  # methods whose params.name is an attribute
WITH_URI = frozenset(("resources/read", "resources/subscribe", "resources/unsubscribe"))
_META_VERSION = "io.modelcontextprotocol/protocolVersion"  # the 2026-07-28 per-request envelope

YES, MAYBE, NO = 2, 1, 0


def sniff(first: bytes, more: bool) -> int:
    """Is this (first chunk of a) body JSON-RPC? YES, NO, or MAYBE: a body cut before it could tell.

    Only the head is read: a JSON-RPC message's first member is ``jsonrpc`` (the Python, Go, Java and C# SDKs) or
    ``method``/``id`` (the TypeScript SDK puts ``jsonrpc`` after ``params``); only then is the whole chunk searched.
    A JSON body that is no JSON-RPC costs ~0.2 us whatever its size (a whole-body search costs ~0.4 ns a byte).
    """
    if first.startswith(_FAST):
        return YES
    if first[:1] not in LEADS:  # not JSON (a form, text, bytes): one slice and one set lookup
        return NO
    head = first[:_HEAD].lstrip(_LEAD)
    if not head:
        return MAYBE if more else NO
    if head.startswith(_FIRST_MEMBERS):
        if head.startswith(_SNIFF_NEEDLE) or _SNIFF_NEEDLE in first:
            return YES
        return MAYBE if more else NO
    if more and len(head) < 10 and any(m.startswith(head) for m in _FIRST_MEMBERS):
        return MAYBE  # cut inside the first member's name
    return NO


class Message(NamedTuple):
    """One JSON-RPC request or notification, as much of it as is recorded."""

    method: str
    id: Any  # None for a notification
    name: str | None  # tools/call's tool, prompts/get's prompt
    uri: str | None  # resources/read (and subscribe): the resource
    version: str | None  # the protocol version the message itself names (initialize's offer, the 2026 envelope)

    @property
    def notification(self) -> bool:
        return self.id is None


class Answer(NamedTuple):
    """One JSON-RPC response: its id, error code (None on success), a tool result's isError, and initialize's
    negotiated protocol version."""

    id: Any
    code: int | None
    tool_error: bool
    version: str | None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _objects(value: Any) -> list[dict]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):  # a batch (2025-03-26)
        return [item for item in value if isinstance(item, dict)]
    return []


def read_messages(body: bytes) -> list[Message]:
    """The requests and notifications of a whole body; responses a client sends back are left out."""
    out = []
    for obj in _objects(_decode(body)):
        method = obj.get("method")
        if not isinstance(method, str) or "jsonrpc" not in obj:
            continue
        ident = obj.get("id")
        if not isinstance(ident, (int, str)) or isinstance(ident, bool):
            ident = None
        params = obj.get("params")
        name = uri = version = None
        if isinstance(params, dict):
            if method in NAMED:
                name = params.get("name")
                name = name if isinstance(name, str) else None
            elif method in WITH_URI:
                uri = params.get("uri")
                uri = uri if isinstance(uri, str) else None
            elif method == "initialize":
                version = params.get("protocolVersion")
            meta = params.get("_meta")
            if isinstance(meta, dict) and isinstance(meta.get(_META_VERSION), str):
                version = meta[_META_VERSION]
            version = version if isinstance(version, str) else None
        out.append(Message(method, ident, name, uri, version))
    return out


def read_answers(raw: bytes) -> list[Answer]:
    """The responses in one JSON body or SSE event's data (requests and notifications the peer sends are skipped)."""
    out = []
    for obj in _objects(_decode(raw)):
        if "method" in obj or ("result" not in obj and "error" not in obj):
            continue
        ident = obj.get("id")
        error = obj.get("error")
        code = None
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            code = code if isinstance(code, int) and not isinstance(code, bool) else -32603
        result = obj.get("result")
        tool_error = version = None
        if isinstance(result, dict):
            tool_error = result.get("isError") is True
            version = result.get("protocolVersion")
        out.append(Answer(ident, code, bool(tool_error), version if isinstance(version, str) else None))
    return out


def matched(requests: dict[Any, Message], answers: Iterable[Answer]) -> Iterator[tuple[Message, Answer]]:
    """Each answer with the request it answers, taken out of ``requests`` (by id): an error the peer could not tie
    to an id (``id: null``) answers the one request still open. Answers to nothing asked are left out."""
    for answer in answers:
        request = requests.pop(answer.id, None)
        if request is None and answer.id is None and answer.code is not None and len(requests) == 1:
            request = requests.popitem()[1]
        if request is not None:
            yield request, answer


def outcome(code: int | None, tool_error: bool, served: bool) -> tuple[str | None, str | None]:
    """(error.type, rpc.response.status_code) of an answer, by the conventions: on the served side the caller's
    mistakes carry their code but are no error."""
    if code is not None:
        status = str(code)
        return (None if served and code in CALLER_MISTAKES else status), status
    return (TOOL_ERROR if tool_error else None), None


class Body:
    """A request or JSON answer body, gathered until its end (references to the chunks, joined once)."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] | None = []
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        if self.chunks is None or not chunk:
            return
        self.size += len(chunk)
        if self.size > MAX_MESSAGE:
            self.chunks = None  # too large to decode: its operations end without an outcome
        else:
            self.chunks.append(chunk)

    def whole(self) -> bytes | None:
        chunks = self.chunks
        if chunks is None:
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class EventStream:
    """SSE events, split at any byte: ``feed`` returns the answers whose event ended in this chunk.

    Lines end with CRLF, LF or CR (a CR last in a chunk waits for the next byte); an event ends at an empty line;
    only ``data`` fields are kept (``event``, ``id``, ``retry`` and comments are skipped). An event whose data
    grows past ``MAX_MESSAGE`` is dropped whole.
    """

    __slots__ = ("buffer", "scanned", "data", "size", "pending_cr")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.scanned = 0  # bytes of the buffer known to hold no line end
        self.data: list[bytes] | None = []
        self.size = 0
        self.pending_cr = False  # the last chunk ended in CR: an LF first in the next belongs to it

    def feed(self, chunk: bytes) -> list[Answer]:
        if not chunk:
            return []
        if self.pending_cr:
            self.pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self.buffer
        buffer += chunk
        answers: list[Answer] = []
        start = 0
        find = buffer.find
        while True:
            lf = find(b"\n", max(start, self.scanned))
            cr = find(b"\r", max(start, self.scanned))
            if lf < 0 and cr < 0:
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            line = bytes(buffer[start:end])
            if end == cr:
                if end + 1 == len(buffer):
                    self.pending_cr = True
                    start = end + 1
                    self.scanned = 0
                    self._line(line, answers)
                    break
                start = end + 2 if buffer[end + 1] == 10 else end + 1
            else:
                start = end + 1
            self.scanned = 0
            self._line(line, answers)
        if start:
            del buffer[:start]
        self.scanned = len(buffer)
        if self.scanned + self.size > MAX_MESSAGE:  # one line without end: past the bound, keep none of it
            self.data, self.scanned = None, 0
            buffer.clear()
        return answers

    def _line(self, line: bytes, answers: list[Answer]) -> None:
        if not line:
            data, self.data, self.size = self.data, [], 0
            if data:
                answers.extend(read_answers(data[0] if len(data) == 1 else b"\n".join(data)))
            return
        if line[:5] != b"data:" and line != b"data":
            return
        if self.data is None:
            return
        value = line[6:] if line[5:6] == b" " else line[5:]
        self.size += len(value) + 1
        if self.size > MAX_MESSAGE:
            self.data = None  # dropped until the event ends
        else:
            self.data.append(value)

    def end(self) -> list[Answer]:
        """The stream ended: a last event without its empty line is not dispatched (as the SSE spec says)."""
        self.buffer.clear()
        self.data, self.size = [], 0
        return []
