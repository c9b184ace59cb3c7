"""Understand LLM responses (and the requested model) as they pass, in bounded memory.

Per streamed chunk this does no JSON parsing: SSE and NDJSON are framed by line (a line split
across body messages is carried over, up to a bound), and generated content is recognised by
counting ``"content":"`` (or ``"text":"``/``"response":"``) minus its empty form with
``bytes.count``. The rare fields (the usage object, finish reason, model, Ollama's final counts)
are parsed once each, from the single event that carries them. Non-streamed JSON keeps only a
head and a tail window, because those fields sit at the ends of the document.

The format comes from the bytes, not only from ``Content-Type``: many proxies stream SSE as
``text/plain`` or NDJSON as ``application/json``. It is decided once per response, from its first
bytes: an SSE field (``data:``, ``event:``, ``id:``, ``retry:``, a ``:`` comment) means SSE; a
complete JSON line followed by more JSON means NDJSON; anything else, or a body that ends first,
is one JSON document. Until then the first bytes are held (bounded), and the first token keeps the
time it arrived. Gemini's ``streamGenerateContent`` without ``alt=sse`` streams one JSON array, element
by element (``[{...}\n,\r\n{...}]``): a body that opens with ``[`` on a Gemini path is read as that stream.

Nothing here raises: malformed input leaves fields unknown, and unknown fields are not recorded.

Bytes are searched with ``find(...) != -1``, never ``in``: CPython's ``bytes.__contains__`` first tries its
argument as an integer, and for bytes that raises, formats and clears a TypeError inside, so ``in`` costs 1.5 to
3 times a ``find`` (3.10 to 3.13), on every chunk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from time import perf_counter

from .endpoints import ANTHROPIC, GEMINI, OLLAMA, OPENAI, RESPONSES, Endpoint

MAX_LINE = 1 << 20  # a line longer than this is not an LLM event: stop parsing the stream
WINDOW = 16 * 1024  # head and tail kept of a non-streamed JSON body
SNIFF_LIMIT = 4 * WINDOW  # bytes held while the format is undecided; past this it is one JSON document
MAX_TOKENS = 10_000_000  # usage numbers above this (or below 0) are absurd and dropped
MAX_MODEL = 2048  # a longer model name is cut here (and to 128 characters when recorded)
# A model name: closed by its quote, or MAX_MODEL characters long (then cut, never dropped).
_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,%d})(")?' % MAX_MODEL)
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
_FINISH = re.compile(rb'"(?:finish_reason|done_reason|stop_reason)"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')
_DECODER = json.JSONDecoder()
_KEPT = 2 * WINDOW  # a Gemini stream keeps its last events up to this
_GEMINI_KEYS = (b'"usageMetadata"', b'"modelVersion"', b'"finishReason"')  # read at the end, from the last event
# Only the events worth a JSON parse: non-null usage, Ollama's last line, errors, a finish reason.
# Four patterns, each with its own literal prefix, scan 4x faster than one alternation (64 KB: 150 us
# against 640 us), which is what bulk bodies pay.
# Each is searched only where its literal is (a ``find`` costs a fifth of a search on a small event).
_USAGE_AT, _DONE_AT, _ERROR_AT, _REASON_AT = b'"usage"', b'"done"', b'"error"', b'_reason"'
_RARE = tuple((literal, re.compile(pattern)) for literal, pattern in (
    (_USAGE_AT, rb'"usage"\s*:\s*\{'), (_DONE_AT, rb'"done"\s*:\s*true'), (_ERROR_AT, rb'"error"\s*:'),
    (_REASON_AT, rb'_reason"\s*:\s*"')))
_USAGE, _DONE, _ERROR, _REASON = (pattern for _, pattern in _RARE)
# A whole OpenAI answer is read by its keys (``ResponseParser._scan_openai``), not decoded whole.
_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*([^\s\]])')
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"((?:[^"\\]|\\.){0,256})"')
_PLAIN_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,%d})(")' % MAX_MODEL)  # no escapes: one fast class
_TYPE_ERROR = re.compile(rb'"type"\s*:\s*"error"')


def _rare(data: bytes) -> int:
    """Whether ``data`` holds an event that carries usage, a finish reason, an error or Ollama's counts: 0 if
    not, else which was seen first in that order (``_REASON_ONLY``: a finish reason, and none of the others)."""
    find = data.find  # the tests of _RARE written out: a loop over it cost three times their bytecodes
    if find(_USAGE_AT) != -1 and _USAGE.search(data):
        return 1
    if find(_DONE_AT) != -1 and _DONE.search(data):
        return 2
    if find(_ERROR_AT) != -1 and _ERROR.search(data):
        return 3
    if find(_REASON_AT) != -1 and _REASON.search(data):
        return 4
    return 0


_REASON_ONLY = len(_RARE)


def _rare_lines(body: bytes) -> list[bytes]:
    """The lines of a many-event ``body`` that ``_rare`` finds an event in, in order. Each pattern is searched once
    over the whole body and only the lines it matches in are looked at: a relayed batch of a hundred events, each
    with ``"usage":null`` and ``"finish_reason":null``, has one or two such lines, not a hundred."""
    starts = set()
    for _, pattern in _RARE:
        match = pattern.search(body)
        while match is not None:
            at = match.start()
            starts.add(body.rfind(b"\n", 0, at) + 1)
            end = body.find(b"\n", at)
            if end == -1:
                break
            match = pattern.search(body, end)
    lines = []
    for start in sorted(starts):
        end = body.find(b"\n", start)
        line = body[start:] if end == -1 else body[start:end]
        if _rare(line):  # a match that ran on past its line end is no event of that line
            lines.append(line)
    return lines


def _count(value: object) -> int | None:
    """A token count if it is a sane whole number, else None (JSON's ints are exactly ``int``; True is not one)."""
    if value.__class__ is int and 0 <= value <= MAX_TOKENS:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    return None


def _text(raw: bytes) -> str | None:
    """A JSON string's raw bytes decoded; a cut one may end inside an escape or a UTF-8 sequence."""
    if raw.find(b"\\") == -1:  # no escapes (nearly every model name): a plain decode, 20x cheaper than json
        try:
            return raw.decode()
        except UnicodeDecodeError:
            pass
    for cut in range(6):
        try:
            return json.loads(b'"' + raw[: len(raw) - cut] + b'"')
        except ValueError:
            continue
    return None


def _closed(match: re.Match[bytes], data: bytes) -> bool:
    """Whether a model-name match is whole: closed by its quote, or cut at MAX_MODEL with more behind it."""
    return match.group(2) is not None or match.end() < len(data) - 1


class RequestModel:
    """Finds the top-level ``"model": "..."`` in a request body as it is received.

    The OpenAI Python client writes ``messages`` before ``model``, so the whole body is searched,
    chunk by chunk with a small overlap; a ``"model"`` key whose value is not a string (a tool
    schema's property, say) is skipped.
    """

    __slots__ = ("model", "_tail", "_done")

    def __init__(self, model: str | None = None) -> None:
        self.model = model  # known from the path (Gemini): the body is not searched
        self._tail = b""
        self._done = model is not None

    def feed(self, body: bytes) -> None:
        if self._done:
            return
        data = self._tail + body if self._tail else body
        start = data.find(b'"model"')
        while start != -1:
            match = _MODEL.match(data, start)
            if match:
                if not _closed(match, data):
                    self._tail = data[start:]  # the name goes on in the next body message
                    return
                self.model = _text(match.group(1))
                self._done = True
                return
            start = data.find(b'"model"', start + 7)
        self._tail = data[-300:]


class AnswerEnd:
    """What every reader of an answer (``ResponseParser``, ``bedrock.BedrockReader``) says alike from its fields."""

    __slots__ = ()
    finish_reason: str | None
    done: bool
    error_event: bool
    output_tokens: int | None
    estimate: bool
    streamed_format: bool
    content_events: int

    @property
    def answer_ended(self) -> bool:
        """Whether the upstream said the answer is over: a finish reason, its last line or event, or an error event.

        SDKs stop reading at a stream's last event (``[DONE]``) and close the connection, so a client
        may leave before the server's last (empty) body message: that answer was served whole, not cut
        short. Read after ``finish()`` (Gemini's finish reason is read there).
        """
        return self.finish_reason is not None or self.done or self.error_event

    @property
    def output_estimated(self) -> bool:
        """No usage reported: the output count is the number of content events (one per token)."""
        return self.output_tokens is None and self.estimate and self.streamed_format and self.content_events > 0

    def output_token_count(self) -> int | None:
        if self.output_tokens is not None:
            return self.output_tokens
        return self.content_events if self.output_estimated else None


def unread(body: bytes, arrived: float = 0.0) -> None:
    """What a finished parser does with more bytes: nothing."""


class ResponseParser(AnswerEnd):
    """Everything an LLM response tells us, gathered as its body messages pass."""

    __slots__ = ("feed", "endpoint", "_key", "_empty", "_other_key", "_one_event_newlines", "streamed_format", "sse",
                 "undecided", "first_token_at", "content_events", "input_tokens", "output_tokens", "response_model",
                 "finish_reason", "error_event", "done", "gave_up", "finished", "_partial", "_held", "_held_at",
                 "_head", "_tail", "_size", "_more", "cache_read_tokens", "cache_creation_tokens", "reasoning_tokens",
                 "estimate", "_hints", "_is_gemini", "_stream", "_recent", "_recent_size", "_last_single")

    def __init__(self, endpoint: Endpoint, content_type: bytes, estimate: bool = True) -> None:
        self.endpoint = endpoint
        self.estimate = estimate  # count output from content deltas when the upstream reports no usage
        # The spelling of the content key (compact or spaced) is settled by the first content seen.
        self._key, self._other_key = endpoint.content_patterns
        self._empty = self._key + b'"'
        # SSE or NDJSON are framed line by line as they stream; a JSON document is kept in windows.
        # A content type that says so decides at once; any other is decided from the first bytes.
        self.sse = content_type.find(b"event-stream") != -1
        self.streamed_format = self.sse or content_type.find(b"ndjson") != -1
        self.undecided = not self.streamed_format
        self._one_event_newlines = 2 if self.sse else 1
        self.first_token_at = 0.0
        self.content_events = 0
        self.input_tokens: int | None = None  # all input, cached included (the conventions' meaning)
        self.output_tokens: int | None = None  # all output, reasoning included
        self.cache_read_tokens: int | None = None  # None: the upstream did not say
        self.cache_creation_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self._more = endpoint.more_content_patterns
        self._hints = endpoint.more_content_hints
        self.response_model: str | None = None
        self.finish_reason: str | None = None
        self.error_event = False
        self.done = False
        self.gave_up = False
        self.finished = False
        self._partial = b""
        # The last one-event body, whose rare fields are read only when a later body has some, or at the end.
        self._last_single: bytes | None = None
        self._held = b""  # the first bytes, while the format is undecided
        self._held_at = 0.0
        self._head = b""
        self._tail = b""
        self._size = 0
        # Gemini events each repeat the usage so far: its streams keep their last events for finish()
        # rather than parsing the usage of each.
        self._is_gemini = endpoint.dialect == GEMINI
        self._stream: Callable[..., None] = self._gemini_lines if self._is_gemini else self._lines
        self._recent: list[bytes] = []
        self._recent_size = 0
        # What to do with the next body message; swapped when the format is decided or parsing stops,
        # so a chunk pays for no dispatch.
        self.feed: Callable[[bytes], None] = self._stream if self.streamed_format else self._sniff

    # -- per body message -------------------------------------------------------------------------
    def _sniff(self, body: bytes) -> None:
        """Hold the first bytes until they say SSE, NDJSON or one JSON document; then replay them."""
        held = self._held = self._held + body
        if not self._held_at and body.find(b"\n") != -1:
            self._held_at = perf_counter()  # when the first line was complete
        start = held.lstrip()
        if len(start) < 6 and (not start or any(len(start) < len(field) and field.startswith(start)
                                                for field in _SSE_FIELDS)):
            return  # nothing yet, or the beginning of an SSE field name (the longest is 6 bytes)
        if start.startswith(_SSE_FIELDS):
            self._decide(sse=True, streamed=True)
        elif start[:1] == b"[" and self._is_gemini:  # streamGenerateContent's JSON array
            self._decide(sse=False, streamed=True)
        elif start[:1] != b"{" or len(held) > SNIFF_LIMIT:
            self._decide(sse=False, streamed=False)
        else:
            newline = start.find(b"\n")
            if newline == -1 or not start[newline:].strip():
                return  # one line so far: an NDJSON stream or a JSON document, the next bytes will say
            self._decide(sse=False, streamed=_json_line(start[:newline]) is not None)

    def _decide(self, sse: bool, streamed: bool) -> None:
        """Settle the format and replay the held bytes; the first line keeps the time it was complete."""
        held = self._held
        self._held = b""
        self.undecided = False
        self.sse = sse
        self.streamed_format = streamed
        self._one_event_newlines = 2 if sse else 1
        self.feed = self._stream if streamed else self._keep_windows
        if not streamed:
            self._keep_windows(held)
            return
        first = held.find(b"\n") + 1
        if first:
            self._stream(held[:first], self._held_at)
        self._stream(held[first:])

    def _lines(self, body: bytes, arrived: float = 0.0) -> None:
        """Count content and read the rare fields of the complete events in ``body``.

        An NDJSON event is a line; an SSE event ends at a blank line (its ``data:`` may span lines).
        What is incomplete waits for the next body message, up to a bound.
        """
        if self._partial:
            body = self._partial + body
            self._partial = b""
        elif self.response_model is not None:
            # Nearly every chunk: one whole event on one line, its line end its only newline(s) (one memchr says
            # so), holding one content string (found from the end, where it sits, then looked for before it).
            size, first = len(body), body.find(b"\n")
            if (first == size - 2 and body[size - 1] == 10 or first == size - 3 and body[size - 2] == 13
                    and body[size - 1] == 10) if self.sse else first == size - 1:
                key = self._key
                last = body.rfind(key)
                if last != -1:
                    if body.find(key, 0, last) == -1:
                        events = 0 if body[last + len(key)] == 34 else 1  # '"': the empty string
                    else:
                        events = body.count(key) - body.count(self._empty)
                    if events:
                        if not self.content_events:
                            self.first_token_at = arrived or perf_counter()
                        self.content_events += events
                        self._last_single = body  # one content event: no usage, finish reason or error
                        return
        if not (body.endswith(b"\n\n") or body.endswith(b"\n\r\n") if self.sse else body.endswith(b"\n")):
            body = self._complete(body)
            if not body:
                return
        at = -1 if self.response_model is not None else body.find(b'"model"')
        if at != -1:
            match = _PLAIN_MODEL.match(body, at) or _MODEL.search(body, at)
            if match:
                self.response_model = _text(match.group(1))
        key = self._key
        events = body.count(key)
        if events == 1:  # nearly every chunk: is its one content string empty? (a byte, not a second count)
            if body[body.rfind(key) + len(key)] == 34:  # '"'
                events = 0
        elif events:
            events -= body.count(self._empty)
        single = False
        if not events:
            events = self._uncommon_content(body)
        else:
            # One event: its line end(s) are its only newlines (found with one memchr, then counted in the tail).
            newlines = self._one_event_newlines
            first = body.find(b"\n")
            if first >= len(body) - newlines - 1 and body.count(b"\n", first) <= newlines:
                single = True  # one content event: it carries no usage, finish reason or error
            else:  # several events: some may be reasoning or tool calls
                events += self._more_content(body)
        if events:
            if not self.content_events:
                self.first_token_at = arrived or perf_counter()
            self.content_events += events
            if single:
                self._last_single = body
                return
        rare = _rare(body)
        if rare:
            if self._last_single is not None:  # read in order: what this body says comes after it
                self._single_rare()
            self._rare_fields(body, rare)

    def _single_rare(self) -> None:
        """The rare fields of the last one-event body, whose look was put off (a stream's last content event
        may also carry its finish reason or usage, as vLLM's do); read before any later event's, and once."""
        last, self._last_single = self._last_single, None
        rare = _rare(last)  # type: ignore[arg-type]
        if rare:
            self._rare_fields(last, rare)  # type: ignore[arg-type]

    def _complete(self, body: bytes) -> bytes:
        """The complete events of ``body``; the rest waits for the next body message, up to a bound."""
        cut = _events_end(body) if self.sse else body.rfind(b"\n") + 1
        self._partial = body[cut:]
        if len(self._partial) > MAX_LINE:
            self.gave_up = True
            self.feed = unread  # an absurdly long line: the response still passes, unread
            self._partial = b""
            return b""
        return body[:cut]

    def _gemini_lines(self, body: bytes, arrived: float = 0.0) -> None:
        """Count the generated parts of Gemini's events (text, thoughts, function calls) and keep the last ones.

        Each event repeats the usage so far, so parsing the events that carry usage, as the other
        dialects do, would parse them all: ``finish`` reads the totals once from the events kept here.
        The array form is framed by line like NDJSON (Google indents it, one key to a line). One
        pass per chunk: function calls and code are looked for only where no text is (Gemini
        reports usage, so they matter to the first token and to estimates, not to the counts).
        """
        if self._partial:
            body = self._partial + body
            self._partial = b""
        if self.sse:
            if not body.endswith((b"\n\r\n", b"\n\n")):
                body = self._complete(body)
                if not body:
                    return
        # The array form's elements end in a "}" line that the next element's message completes: a body
        # ending in "}" or "]" ends with no part of a key, so its last line need not wait for its end.
        elif not body.endswith((b"\n", b"}", b"]")):
            body = self._complete(body)
            if not body:
                return
        recent = self._recent
        recent.append(body)
        self._recent_size += len(body)
        if self._recent_size > _KEPT:  # keep at least the last WINDOW bytes, in whole events or lines
            while self._recent_size - len(recent[0]) >= WINDOW:
                self._recent_size -= len(recent.pop(0))
        key = self._key
        at = body.find(key)
        if at == -1:
            events = self._uncommon_content(body)
        else:  # one pass over the body when it has one text part, as nearly every event does
            start = at + len(key)
            more = body.count(key, start)
            # with one text, True (1) unless it is empty
            events = 1 + more - body.count(self._empty, at) if more else body[start:start + 1] != b'"'
            if not events:
                events = self._uncommon_content(body)
        if events:
            if not self.content_events:
                self.first_token_at = arrived or perf_counter()
            self.content_events += events

    def _uncommon_content(self, body: bytes) -> int:
        """Content in the other spelling (then switch to it), or other output: reasoning, tool calls."""
        if body.find(self._other_key) != -1 and self._other_key != self._key:
            self._key, self._other_key = self._other_key, self._key
            self._empty = self._key + b'"'
            return body.count(self._key) - body.count(self._empty) + self._more_content(body)
        return self._more_content(body)

    def _more_content(self, body: bytes) -> int:
        """Reasoning and tool-call deltas: generated output outside the main content key."""
        for hint in self._hints:
            if body.find(hint) != -1:
                break
        else:
            return 0  # the common case: one or two substring tests
        found = 0
        for key, empty in self._more:
            if body.find(key) != -1:
                found += body.count(key) - (body.count(empty) if empty else 0)
        return found

    def _rare_fields(self, body: bytes, rare: int = 0) -> None:
        """The few events that carry usage, finish reason, errors or Ollama's final counts (``rare``: what
        ``_rare`` saw in ``body``)."""
        if body.count(b"\n") <= self._one_event_newlines:  # one event on one line, which _rare has looked at
            if rare == _REASON_ONLY and self.endpoint.dialect == OPENAI and not _TYPE_ERROR.search(body) \
                    and self.response_model is not None and self._finish_reason_of(body):
                return  # an OpenAI chunk whose only news is its finish reason: read by key, not decoded
            document = _json_line(body)
            if isinstance(document, dict):
                self._take(document)
                return
        for line in _rare_lines(body):
            document = _json_line(line)
            if isinstance(document, dict):
                self._take(document)
            elif self.sse:  # an SSE data payload spread over several lines: read whole events
                for event in _sse_events(body):
                    document = _json_line(event)
                    if isinstance(document, dict):
                        self._take(document)
                return

    def _keep_windows(self, body: bytes) -> None:
        self._size += len(body)
        if len(self._head) < WINDOW:
            self._head += body[: WINDOW - len(self._head)]
        self._tail = (self._tail + body)[-WINDOW:] if len(body) < WINDOW else body[-WINDOW:]

    # -- at the end -----------------------------------------------------------------------------
    def finish(self) -> None:
        """Parse what a non-streamed body left in its windows (once; later calls do nothing).

        Then the parser lets go of its own bound methods, so no reference cycle keeps it for the garbage
        collector: a cycle per LLM call was the only one a served request made (and the collections it brought
        on traverse every object of the app)."""
        if self.finished:
            return
        self.finished = True
        try:
            self._finish()
        finally:
            self.feed = self._stream = unread

    def _finish(self) -> None:
        if self.undecided:  # the body ended before it looked like a stream: one JSON document
            self._decide(sse=False, streamed=False)
        if self.streamed_format:
            if self._partial:  # a last event without its line end
                self._stream(b"\n\n" if self.sse else b"\n")
            if self._last_single is not None:
                self._single_rare()
            if self._is_gemini and self._recent:
                self._gemini_tail(self._recent)
            return
        if self.gave_up or not self._size:
            return
        whole = self._head if self._size <= WINDOW else None
        document = None
        if whole is not None:
            if self.endpoint.dialect == OPENAI and self._scan_openai(whole):
                return
            try:
                document = json.loads(whole)
            except ValueError:
                document = None
        if isinstance(document, dict):
            self._take(document)
            self._content_from(document)
            return
        if self._is_gemini:  # the usage, model and finish reason all sit in the tail
            self._gemini_tail([self._tail])
            return
        # Too large to keep: the usage object and counts sit in the tail, the model in the head.
        match = _MODEL.search(self._head)
        if match and _closed(match, self._head):
            self.response_model = _text(match.group(1))
        at = self._tail.rfind(b'"usage"')
        if at != -1:
            self._take(_object_around(self._tail, at))
        match = _FINISH.search(self._tail)
        if match:
            self.finish_reason = match.group(1).decode()

    def _scan_openai(self, whole: bytes) -> bool:
        """A whole OpenAI answer read by its keys, as a stream's events are: the model, the usage object (the
        only part decoded) and the choices' finish reasons. False (decode it whole) for anything less plain:
        an error, no choices or empty ones, a document that does not close, a model name cut short."""
        if whole.find(b'"error"') != -1 or (whole.find(b'"type"') != -1 and _TYPE_ERROR.search(whole)) \
                or whole.lstrip()[:1] != b"{" or not whole.rstrip().endswith(b"}"):
            return False
        choices = _CHOICES.search(whole)
        if choices is None or choices.group(1) == b"]":
            return False
        at = whole.find(b'"model"')  # the first "model" key is the top-level one: nothing before it names one
        if at != -1:
            model = _PLAIN_MODEL.match(whole, at) or _MODEL.search(whole, at)
            if model is not None and not _closed(model, whole):
                return False
            if model is not None:
                self.response_model = _text(model.group(1))
        at = whole.rfind(b'"usage"')
        if at != -1:
            colon = whole.find(b":", at + 7)
            if colon != -1 and not whole[at + 7:colon].strip():
                try:
                    text = whole[colon + 1:].decode("utf-8", errors="replace")
                    usage = _DECODER.raw_decode(text, len(text) - len(text.lstrip()))[0]
                except ValueError:
                    usage = None
                self._openai({"usage": usage})
        self._finish_reason_of(whole)  # the last choice's string one, as a whole decode reads them
        self.content_events = 1
        return True

    def _finish_reason_of(self, data: bytes) -> bool:
        """The last choice's string ``finish_reason`` in ``data``, read by its key; False when there is none."""
        at = len(data)
        while True:
            at = data.rfind(b'"finish_reason"', 0, at)
            if at == -1:
                return False
            found = _FINISH_REASON.match(data, at)
            if found is not None:
                reason = _text(found.group(1))
                if reason is not None:
                    self.finish_reason = reason[:64]
                    return True

    def _take(self, document: dict) -> None:
        """Read usage, finish reason, model and errors from one event (or a whole response)."""
        if document.get("error") or document.get("type") == "error":
            self.error_event = True
        self._model_of(document)
        _READERS[self.endpoint.dialect](self, document)

    def _model_of(self, holder: dict) -> None:
        """The response model, from the first object that names one."""
        model = holder.get("model")
        if isinstance(model, str) and model and self.response_model is None:
            self.response_model = model

    def _openai(self, document: dict) -> None:
        usage = document.get("usage")
        if usage.__class__ is dict:  # _count and _get inline: this runs once per call, on the request path
            value = usage.get("prompt_tokens", usage.get("input_tokens"))
            self.input_tokens = value if value.__class__ is int and 0 <= value <= MAX_TOKENS else None
            value = usage.get("completion_tokens", usage.get("output_tokens"))
            self.output_tokens = value if value.__class__ is int and 0 <= value <= MAX_TOKENS else None
            details = usage.get("prompt_tokens_details")
            value = details.get("cached_tokens") if details.__class__ is dict else None
            self.cache_read_tokens = value if value.__class__ is int and 0 <= value <= MAX_TOKENS else None
            details = usage.get("completion_tokens_details")
            value = details.get("reasoning_tokens") if details.__class__ is dict else None
            self.reasoning_tokens = value if value.__class__ is int and 0 <= value <= MAX_TOKENS else None
        choices = document.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                    self.finish_reason = choice["finish_reason"][:64]

    def _ollama(self, document: dict) -> None:
        if document.get("done") is True:
            self.done = True
            self.input_tokens = _count(document.get("prompt_eval_count"))
            self.output_tokens = _count(document.get("eval_count"))
            reason = document.get("done_reason")
            if isinstance(reason, str):
                self.finish_reason = reason[:64]

    def _anthropic(self, document: dict) -> None:
        """``message_start`` (or a whole message) carries input usage; ``message_delta`` the output and stop."""
        message = document.get("message") if document.get("type") == "message_start" else document
        if not isinstance(message, dict):
            return
        self._model_of(message)
        usage = message.get("usage")
        if isinstance(usage, dict):
            uncached = _count(usage.get("input_tokens"))
            read = _count(usage.get("cache_read_input_tokens"))
            created = _count(usage.get("cache_creation_input_tokens"))
            if uncached is not None:  # Anthropic's input_tokens leaves the cache out; the conventions count it in
                self.input_tokens = uncached + (read or 0) + (created or 0)
                self.cache_read_tokens, self.cache_creation_tokens = read, created
            output = _count(usage.get("output_tokens"))
            if output is not None:
                self.output_tokens = output  # cumulative: the last message_delta has the total
        delta = document.get("delta") if document.get("type") == "message_delta" else message
        if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
            self.finish_reason = delta["stop_reason"][:64]

    def _responses(self, document: dict) -> None:
        """``response.completed`` / ``.incomplete`` / ``.failed`` (or a whole response) carry the outcome."""
        response = document.get("response") if "response" in document else document
        if not isinstance(response, dict):
            return
        self._model_of(response)
        usage = response.get("usage")
        if isinstance(usage, dict):
            self.input_tokens = _count(usage.get("input_tokens"))
            self.output_tokens = _count(usage.get("output_tokens"))
            self.cache_read_tokens = _count(_get(usage, "input_tokens_details", "cached_tokens"))
            self.reasoning_tokens = _count(_get(usage, "output_tokens_details", "reasoning_tokens"))
        status = response.get("status")
        if status == "completed":
            self.finish_reason = "stop"
        elif status == "incomplete":
            reason = _get(response, "incomplete_details", "reason")
            self.finish_reason = reason[:64] if isinstance(reason, str) else "incomplete"
        elif status == "failed" or response.get("error"):
            self.error_event = True

    def _gemini(self, document: dict) -> None:
        """One generateContent response (or a stream's last one): usage, model version, finish reason.

        ``promptTokenCount`` includes the cached tokens, as the conventions' input does; tool-use prompts
        (search results, say) are counted apart by Google and added here. ``candidatesTokenCount``
        leaves the thoughts out, so they are added to make output mean what it means elsewhere: all
        generated tokens, reasoning included. Google omits zero counts, so a missing count is 0 once
        the usage names any output, and unknown otherwise.
        """
        version = document.get("modelVersion")
        if isinstance(version, str) and version:
            self.response_model = version[:MAX_MODEL]
        usage = document.get("usageMetadata")
        if isinstance(usage, dict):
            prompt = _count(usage.get("promptTokenCount"))
            if prompt is not None:
                self.input_tokens = prompt + (_count(usage.get("toolUsePromptTokenCount")) or 0)
            self.cache_read_tokens = _count(usage.get("cachedContentTokenCount"))
            answer, thoughts = _count(usage.get("candidatesTokenCount")), _count(usage.get("thoughtsTokenCount"))
            if answer is not None or thoughts is not None:
                self.output_tokens = (answer or 0) + (thoughts or 0)
            self.reasoning_tokens = thoughts
        candidates = document.get("candidates")
        if isinstance(candidates, list):
            for candidate in candidates:
                if isinstance(candidate, dict) and isinstance(candidate.get("finishReason"), str):
                    self.finish_reason = candidate["finishReason"][:64]

    def _gemini_tail(self, pieces: list[bytes]) -> None:
        """Read the end of a Gemini stream (the pieces ``_gemini_lines`` kept) or of a large answer, by key.

        Found by their keys rather than by framing the events, so SSE, the array form and the raw
        JSON error Google may append to a 200 stream (outside the SSE framing) are read alike. The
        last event has the totals and repeats the model: the last 4 KB are read first, and all that
        was kept only when the usage or the finish reason is not in them.
        """
        start, size = len(pieces), 0
        while start and size < 4096:
            start -= 1
            size += len(pieces[start])
        tail = b"".join(pieces[start:])
        error = _last_value(tail, b'"error"')  # a stream's error ends it
        if isinstance(error, dict) and error:
            self.error_event = True
        found = {key: _last_value(tail, key) for key in _GEMINI_KEYS}
        if start and None in found.values():  # a last event longer than the tail read
            whole = b"".join(pieces)
            found = {key: _last_value(whole, key) if value is None else value for key, value in found.items()}
        reason = found[b'"finishReason"']
        self._gemini({"usageMetadata": found[b'"usageMetadata"'], "modelVersion": found[b'"modelVersion"'],
                      "candidates": [{"finishReason": reason}] if reason is not None else None})

    def _content_from(self, document: dict) -> None:
        """A non-streamed answer: did it carry generated content at all (for the estimate flag)."""
        for key in ("choices", "content", "output", "message", "response", "candidates"):
            if document.get(key):
                self.content_events = 1
                return


_READERS = {"openai": ResponseParser._openai, OLLAMA: ResponseParser._ollama, ANTHROPIC: ResponseParser._anthropic,
            RESPONSES: ResponseParser._responses, GEMINI: ResponseParser._gemini}


def _get(document: dict, outer: str, inner: str) -> object:
    """``document[outer][inner]`` when both are there."""
    found = document.get(outer)
    return found.get(inner) if isinstance(found, dict) else None


def _json_line(line: bytes) -> object:
    """The JSON object of an NDJSON line or an SSE ``data:`` payload, else None."""
    line = line.strip()
    if line.startswith(b"data:"):
        line = line[5:].strip()
    if not line.startswith(b"{"):
        return None
    try:  # json.loads's own steps for bytes that open with "{": UTF-8, then the decoder
        return _DECODER.decode(line.decode("utf-8", "surrogatepass"))
    except ValueError:
        return None


def _events_end(body: bytes) -> int:
    """Where the last complete SSE event of ``body`` ends (after its blank line), or 0."""
    lf, crlf = body.rfind(b"\n\n"), body.rfind(b"\n\r\n")
    return max(lf + 2 if lf != -1 else 0, crlf + 3 if crlf != -1 else 0)


def _sse_events(body: bytes) -> list[bytes]:
    """The ``data:`` payloads of complete SSE events, multi-line ones joined as the spec says."""
    events, data = [], []
    for line in body.split(b"\n"):
        line = line.rstrip(b"\r")
        if line.startswith(b"data:"):
            payload = line[5:]
            data.append(payload[1:] if payload.startswith(b" ") else payload)
        elif not line and data:
            events.append(b"\n".join(data))
            data = []
    if data:
        events.append(b"\n".join(data))
    return events


def _last_value(data: bytes, key: bytes) -> object:
    """The value after the last ``key`` (a quoted JSON key) in JSON bytes, or None (absent, or cut off)."""
    at = data.rfind(key)
    if at == -1:
        return None
    rest = data[at + len(key):].decode("utf-8", errors="replace").lstrip()
    if not rest.startswith(":"):
        return None
    try:
        return _DECODER.raw_decode(rest[1:].lstrip())[0]
    except ValueError:
        return None


def _object_around(tail: bytes, at: int) -> dict:
    """Decode ``{"usage": {...}}``-like fields found at ``at`` inside a truncated document."""
    try:
        text = tail[at:].decode("utf-8", errors="replace")
        key, end = _DECODER.raw_decode(text)
        rest = text[end:].lstrip()
        if not rest.startswith(":"):
            return {}
        value, _ = _DECODER.raw_decode(rest[1:].lstrip())
        return {key: value}
    except ValueError:
        return {}
