"""AWS event-stream frames (``application/vnd.amazon.eventstream``), decoded incrementally from any byte split.

Bedrock streams (ConverseStream, InvokeModelWithResponseStream) are binary frames, not lines::

    total length (u32) | headers length (u32) | prelude CRC32 (u32) | headers | payload | message CRC32 (u32)

The prelude CRC covers the two lengths; the message CRC covers everything before it (prelude and its CRC
included). A length or a CRC that does not hold means the stream cannot be trusted from there on: the
decoder records why in ``error`` and reads nothing more, and never raises into whoever feeds it (the caller's
own library raises, or not, as it would bare).

Per frame the cost is one ``zlib.crc32`` call (the message CRC covers the prelude and the prelude's CRC, so the
prelude's own is computed only when it fails, to name the damage), two unpacks and a dict lookup: the headers
of a stream repeat byte for byte (every ``contentBlockDelta`` frame carries the same three), so each distinct
header block is parsed once and looked up afterwards. Events the caller only counts never leave the loop; the
others' payloads are handed on undecoded, and the caller decides whether they are worth reading.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from time import perf_counter
from zlib import crc32

PRELUDE = 12
MAX_HEADERS = 128 * 1024  # the limits AWS's SDKs enforce
MAX_PAYLOAD = 24 * 1024 * 1024
MAX_FRAME = PRELUDE + MAX_HEADERS + MAX_PAYLOAD + 4
_KNOWN_HEADER_BLOCKS = 256  # distinct header blocks remembered (a stream has a handful)
_PARSED: dict[bytes, tuple[str, str]] = {}  # header block -> kind, shared by every stream of the process
_PRELUDE = Struct(">III")
_U16 = Struct(">H")
_U32 = Struct(">I")
_unpack_prelude, _unpack_u32 = _PRELUDE.unpack_from, _U32.unpack_from
# Value sizes of the fixed-size header types (0 true, 1 false, 2 byte, 3 short, 4 int, 5 long, 8 timestamp, 9 uuid);
# 6 (bytes) and 7 (string) carry a u16 length.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}

# Errors, as ``FrameDecoder.error`` names them.
BAD_LENGTH, BAD_PRELUDE_CRC, BAD_MESSAGE_CRC, BAD_HEADERS, TRUNCATED = (
    "bad_length", "bad_prelude_crc", "bad_message_crc", "bad_headers", "truncated")


# What a frame's headers say: (message type, name); the name is the event type of an ``event``, the exception
# type of an ``exception``, the error code of an ``error``.
Kind = tuple[str, str]


def parse_headers(block: bytes) -> dict[str, object] | None:
    """The headers of one frame by name (strings decoded, others as raw bytes or bools); None if malformed."""
    headers: dict[str, object] = {}
    pos, end = 0, len(block)
    try:
        while pos < end:
            size = block[pos]
            name = block[pos + 1:pos + 1 + size].decode()
            pos += 1 + size
            kind = block[pos]
            pos += 1
            if kind in (6, 7):
                (length,) = _U16.unpack_from(block, pos)
                raw = block[pos + 2:pos + 2 + length]
                pos += 2 + length
                value: object = raw.decode() if kind == 7 else raw
            elif kind in _FIXED:
                width = _FIXED[kind]
                value = kind == 0 if width == 0 else block[pos:pos + width]
                pos += width
            else:
                return None
            if pos > end:
                return None
            headers[name] = value
    except Exception:  # IndexError, UnicodeDecodeError, struct.error: a malformed block
        return None
    return headers


def kind_of(headers: dict[str, object]) -> Kind:
    """A frame's (message type, name) from its headers."""
    message_type = headers.get(":message-type")
    message_type = message_type if isinstance(message_type, str) else "event"
    key = {"exception": ":exception-type", "error": ":error-code"}.get(message_type, ":event-type")
    name = headers.get(key)
    return message_type, name if isinstance(name, str) else ""


class _Openings:
    """An event counted when its payload opens with one of ``openings``, else handed on as ``kind``."""

    __slots__ = ("kind", "openings")

    def __init__(self, kind: Kind, openings: tuple[bytes, ...]) -> None:
        self.kind, self.openings = kind, openings


# (message type, name) of a frame, its payload's bytes, where the payload starts, where it ends.
OnFrame = Callable[[Kind, bytes, int, int], None]


class FrameDecoder:
    """Splits fed bytes into event-stream frames, checks them, and calls ``on_frame`` for each whole one.

    Events named in ``counted`` (a stream's content deltas) are only counted: ``counted`` and, when the first
    arrived, ``first_counted_at`` (``perf_counter``; frames fed together arrived together). So are the events of
    ``counted_when`` (name -> payload openings) whose payload opens with one of their openings. ``error`` is None
    while the stream is sound; a bad frame sets it and stops decoding. ``finish()`` says whether the bytes ended
    inside a frame (``TRUNCATED``).
    """

    __slots__ = ("on_frame", "count_names", "count_openings", "counted", "first_counted_at", "error", "frames",
                 "_parts", "_have", "_need", "_kinds")

    def __init__(self, on_frame: OnFrame, counted: frozenset[str] = frozenset(),
                 counted_when: dict[str, tuple[bytes, ...]] | None = None) -> None:
        self.on_frame = on_frame
        self.count_names = counted
        self.count_openings = counted_when or {}
        self.counted = 0
        self.first_counted_at = 0.0
        self.error: str | None = None
        self.frames = 0
        self._parts: list[bytes] = []  # the bytes of a frame not yet whole
        self._have = 0
        self._need = PRELUDE  # how many bytes the held parts must reach before they are worth looking at
        # header block -> its kind; None for a counted event, _Openings for one counted by its payload's opening
        self._kinds: dict[bytes, Kind | _Openings | None] = {}

    def feed(self, data: bytes) -> None:
        """Decode every frame ``data`` completes; never raises."""
        if self.error is not None or not data:
            return
        parts = self._parts
        if parts:
            parts.append(data)
            self._have += len(data)
            if self._have < self._need:  # a large frame arriving in pieces: joined once, when whole
                return
            data = b"".join(parts)
            parts.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        try:  # one function per chunk: the call is a third of the cost of a one-frame chunk
            size, pos, frames, counted = len(data), 0, 0, 0
            kinds = self._kinds
            while size - pos >= PRELUDE:
                total, headers_length, prelude_crc = _unpack_prelude(data, pos)
                end = pos + total
                if end > size or total < PRELUDE + 4 + headers_length or headers_length > MAX_HEADERS \
                        or total > MAX_FRAME:
                    if crc32(data[pos:pos + 8]) != prelude_crc:  # a corrupt length is told as such, never waited for
                        self.error = BAD_PRELUDE_CRC
                    elif end <= size or total < PRELUDE + 4 + headers_length or total > MAX_FRAME \
                            or headers_length > MAX_HEADERS:
                        self.error = BAD_LENGTH
                    break
                if crc32(data[pos:end - 4]) != _unpack_u32(data, end - 4)[0]:
                    # the message CRC covers the prelude and its CRC: the prelude's own is checked only to say which
                    self.error = BAD_PRELUDE_CRC if crc32(data[pos:pos + 8]) != prelude_crc else BAD_MESSAGE_CRC
                    break
                start = pos + PRELUDE + headers_length
                block = data[pos + PRELUDE:start]
                frames += 1
                pos = end
                kind = kinds.get(block, False)
                if kind is None:  # a counted event: the common frame of a stream, nothing to read
                    counted += 1
                    continue
                if kind is False:
                    kind = self._kind(block)
                    if kind is False:
                        break
                    if kind is None:
                        counted += 1
                        continue
                if kind.__class__ is _Openings:
                    if data.startswith(kind.openings, start):  # type: ignore[union-attr]
                        counted += 1
                        continue
                    kind = kind.kind  # type: ignore[union-attr]
                try:  # free in 3.11 when nothing raises
                    self.on_frame(kind, data, start, end - 4)  # type: ignore[arg-type]
                except Exception:  # a payload the handler could not read: that frame's fields stay unknown
                    pass
            self.frames += frames
            if counted:
                if not self.counted:
                    self.first_counted_at = perf_counter()
                self.counted += counted
            if self.error is None and pos < size:
                rest = data[pos:] if pos else data
                self._parts.append(rest)
                self._have = len(rest)
                self._need = _PRELUDE.unpack_from(rest)[0] if len(rest) >= PRELUDE else PRELUDE
        except Exception:  # a bug of ours must not reach the caller's read
            self.error = BAD_HEADERS

    def _kind(self, block: bytes) -> Kind | _Openings | None | bool:
        """A header block seen for the first time: its kind, remembered (False when malformed)."""
        kind: Kind | _Openings | None = _PARSED.get(block)
        if kind is None:
            headers = parse_headers(block)
            if headers is None:
                self.error = BAD_HEADERS
                return False
            kind = kind_of(headers)
            if len(_PARSED) < _KNOWN_HEADER_BLOCKS:  # every stream of a process repeats the same few blocks
                _PARSED[block] = kind
        if kind[0] == "event":  # type: ignore[index]
            name = kind[1]  # type: ignore[index]
            if name in self.count_names:
                kind = None
            elif name in self.count_openings:
                kind = _Openings(kind, self.count_openings[name])  # type: ignore[arg-type]
        if len(self._kinds) < _KNOWN_HEADER_BLOCKS:
            self._kinds[block] = kind
        return kind

    def finish(self) -> str | None:
        """At the end of the bytes: the error, or ``TRUNCATED`` when they stopped inside a frame."""
        if self.error is None and self._parts:
            self.error = TRUNCATED
            self._parts.clear()
        return self.error
