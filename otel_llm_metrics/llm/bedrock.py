"""What an AWS Bedrock runtime answer says: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream.

``BedrockReader`` has the reading surface of ``parse.ResponseParser`` (``feed``, ``finish``, the token, model,
finish-reason and first-content fields, ``answer_ended``), so the per-call record and both directions use it
the same way. Bedrock answers are either one JSON document or AWS event-stream frames (``eventstream``):

- Converse: ``usage`` (``inputTokens``, ``outputTokens``, ``cacheReadInputTokens``, ``cacheWriteInputTokens``)
  and ``stopReason``. ``inputTokens`` leaves the cache out (totalTokens adds them); the conventions' input
  counts it in, so input is the sum.
- ConverseStream: every ``contentBlockDelta`` (text, reasoning, tool input) is generated content, counted from
  its headers alone, its JSON never decoded; ``messageStop`` has the stop reason, the last event ``metadata``
  the usage. An ``exception`` frame (``throttlingException``, ``modelStreamErrorException``...) is the call's
  ``error_type``.
- InvokeModel: the model family's own body, read by its keys (Anthropic Messages, Amazon Nova, Titan text and
  embeddings, Meta Llama, Mistral and Cohere finish reasons), with Bedrock's ``x-amzn-bedrock-*-token-count``
  headers when the body has no usage.
- InvokeModelWithResponseStream: ``chunk`` events whose base64 ``bytes`` carry the family's own events
  (Anthropic's ``message_start``/``content_block_delta``/``message_delta``, Nova's ``contentBlockDelta`` and
  ``metadata``, Titan's and Llama's pieces), and in the last one ``amazon-bedrock-invocationMetrics``, used
  when the family's events gave no usage. Only events that may carry usage or a finish reason are decoded.

Nothing here raises into the caller: a malformed answer leaves fields unknown.
"""

from __future__ import annotations

import json
from binascii import Error as Base64Error
from binascii import a2b_base64, b2a_base64
from collections.abc import Iterable, Sequence
from time import perf_counter

from .. import catalogue as c
from ..error_types import CONNECTION_ERROR  # a stream cut inside a frame, named as a cut connection
from .endpoints import BEDROCK_STREAMS, Endpoint
from .eventstream import FrameDecoder, Kind
from .parse import AnswerEnd, unread

MAX_TOKENS = 10_000_000  # usage numbers above this (or below 0) are absurd and dropped
MAX_WHOLE = 64 * 1024  # a JSON answer up to this is decoded whole
WINDOW = 16 * 1024  # past it, its head and tail are kept and its fields found by key
# The exceptions Bedrock's streams declare; any other name is c.OTHER (error.type stays bounded).
STREAM_EXCEPTIONS = frozenset(("internalServerException", "modelStreamErrorException", "validationException",
                               "throttlingException", "serviceUnavailableException", "modelTimeoutException",
                               "accessDeniedException", "resourceNotFoundException"))
_METRICS = "amazon-bedrock-invocationMetrics"
_COUNTED = frozenset(("contentBlockDelta",))  # ConverseStream's generated content: counted, never decoded
_HEADERS = {b"x-amzn-bedrock-input-token-count": "input", b"x-amzn-bedrock-output-token-count": "output",
            b"x-amzn-bedrock-cache-read-input-token-count": "cache_read",
            b"x-amzn-bedrock-cache-write-input-token-count": "cache_write"}
# Inner events of a chunk that are generated content as a whole (Anthropic's, Nova's deltas).
_DELTAS = (b'"content_block_delta"', b'"contentBlockDelta"')
# The same, as the first characters of their base64 (whole 3-byte groups of the event's compact JSON opening).
_B64_DELTAS = tuple(b2a_base64(opening[:len(opening) // 3 * 3], newline=False)
                    for opening in (b'{"type":"content_block_delta"', b'{"contentBlockDelta":'))
# InvokeModelWithResponseStream's chunks that are content deltas, counted by the frame decoder from their opening.
_COUNTED_CHUNKS = {"chunk": tuple(b'{"bytes":"' + opening for opening in _B64_DELTAS)}
# Other families' content pieces: (key with a string value, its empty form).
_PIECES = ((b'"outputText":"', b'"outputText":""'), (b'"generation":"', b'"generation":""'),
           (b'"text":"', b'"text":""'))
# Inner events worth decoding: usage, metrics, a finish reason, the model. Titan's and Llama's pieces each repeat
# running counts: only their last (a finish reason, the invocation metrics) is decoded.
_RARE = (b'"usage"', b"Metrics", b'eason":"', b'"message_start"')
# Keys read from the head and tail of a JSON answer too large to keep whole.
_FLAT_KEYS = ("usage", "stopReason", "stop_reason", "inputTextTokenCount", "tokenCount", "completionReason",
              "prompt_token_count", "generation_token_count", "finish_reason", "model", _METRICS)
_DECODER = json.JSONDecoder()


def _count(value: object) -> int | None:
    """A token count if it is a sane whole number, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None


def _reason(value: object) -> str | None:
    return value[:64] if isinstance(value, str) and value else None


class BedrockReader(AnswerEnd):
    """Everything one Bedrock answer tells, gathered as its bytes pass (see the module's docstring)."""

    __slots__ = ("feed", "endpoint", "estimate", "streamed_format", "_first_at", "_events",
                 "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "reasoning_tokens",
                 "response_model", "finish_reason", "error_event", "error_type", "done", "finished", "frames",
                 "_decoder", "_head", "_tail", "_size", "_headers", "_metrics")

    def __init__(self, endpoint: Endpoint, headers: Iterable[Sequence[bytes]] = (), estimate: bool = True) -> None:
        """``headers``: the answer's, names in any case (an HTTP/1.1 server sends ``X-Amzn-Bedrock-...``), as
        (name, value) pairs or httpx's own (name, lowercased name, value) triples (``client.headers.HeaderItems``);
        the content type and Bedrock's token counts are read."""
        self.endpoint = endpoint
        self.estimate = estimate
        content_type = b""
        self._headers: dict[str, int] = {}
        for item in headers:
            name, value = item[0].lower(), item[-1]  # a Bedrock answer has a dozen headers, read once
            if name == b"content-type":
                content_type = value.lower()
            elif name in _HEADERS:
                value = value.strip()
                if value.isdigit() and len(value) < 9:
                    self._headers[_HEADERS[name]] = int(value)
        self.streamed_format = content_type.find(b"eventstream") != -1
        self._first_at = 0.0  # content outside ConverseStream's deltas (which the frame decoder counts)
        self._events = 0
        self.input_tokens: int | None = None  # all input, the cache included (the conventions' meaning)
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_creation_tokens: int | None = None
        self.reasoning_tokens: int | None = None  # Bedrock does not report it apart
        self.response_model: str | None = None
        self.finish_reason: str | None = None
        self.error_event = False
        self.error_type: str | None = None  # a stream's exception event, or a broken stream
        self.done = False  # the stream's last event (metadata, or the invocation metrics) arrived
        self.finished = False
        self._metrics: dict | None = None
        self._head = b""
        self._tail = b""
        self._size = 0
        self._decoder: FrameDecoder | None = None
        if self.streamed_format:
            self._decoder = FrameDecoder(self._frame, _COUNTED, _COUNTED_CHUNKS)
            self.feed = self._decoder.feed
        elif not content_type and endpoint.action in BEDROCK_STREAMS:
            self.feed = self._sniff  # no content type: a frame starts with its length's high byte, 0
        else:
            self.feed = self._keep

    # -- per chunk ----------------------------------------------------------------------------------
    def _sniff(self, data: bytes) -> None:
        if not data:
            return
        if data.lstrip()[:1] in (b"{", b"["):
            self.feed = self._keep
        else:
            self.streamed_format = True
            self._decoder = FrameDecoder(self._frame, _COUNTED, _COUNTED_CHUNKS)
            self.feed = self._decoder.feed
        self.feed(data)

    def _keep(self, data: bytes) -> None:
        """A JSON answer: kept whole up to MAX_WHOLE, else its head and tail."""
        self._size += len(data)
        if len(self._head) < MAX_WHOLE:
            self._head += data[:MAX_WHOLE - len(self._head)]
        self._tail = (self._tail + data)[-WINDOW:] if len(data) < WINDOW else data[-WINDOW:]

    def _frame(self, kind: Kind, data: bytes, start: int, end: int) -> None:
        """One checked event-stream frame (a counted delta never comes here); ``data[start:end]`` is its payload."""
        message_type, name = kind
        if name == "chunk":  # {"bytes": "<base64 of the family's event>", "p": "<padding>"}
            at = start + 10 if data.startswith(b'{"bytes":"', start) else data.find(b'"bytes":"', start, end) + 9
            if at == 8:
                return
            if data.startswith(_B64_DELTAS, at):  # a delta after other keys (the decoder counts the usual ones)
                self._content()
            else:
                self._chunk(data[at:data.index(b'"', at, end)])
        elif message_type != "event":  # an exception or error frame ends the stream
            self.error_event = True
            self.error_type = name if name in STREAM_EXCEPTIONS else c.OTHER
        elif name in ("metadata", "messageStop"):
            self._take(json.loads(data[start:end]))
            if name == "metadata":
                self.done = True

    def _chunk(self, encoded: bytes) -> None:
        """The family's own event, base64-encoded: content, or a rare event that carries usage or a finish."""
        try:
            inner = a2b_base64(encoded)
        except (ValueError, Base64Error):
            return
        for delta in _DELTAS:
            if delta in inner:
                self._content()
                return
        for key, empty in _PIECES:
            if key in inner and inner.count(key) > inner.count(empty):
                self._content()
                break
        for rare in _RARE:
            if rare in inner:
                document = json.loads(inner)
                if isinstance(document, dict):
                    self._take(document)
                    if _METRICS in document:
                        self.done = True
                return

    def _content(self) -> None:
        if not self._events:
            self._first_at = perf_counter()
        self._events += 1

    # -- reading documents -----------------------------------------------------------------------
    def _take(self, document: dict) -> None:  # noqa: C901 - one key test per family, in one place
        """Usage, finish reason and model from one answer or event, of any family (their keys do not collide)."""
        kind = document.get("type")
        if kind == "message_start":  # Anthropic: the message, with the input usage
            message = document.get("message")
            if isinstance(message, dict):
                self._take(message)
            return
        if kind == "error" or (isinstance(document.get("error"), dict)):
            self.error_event = True
        for wrapper in ("metadata", "messageStop"):  # Nova's stream events wrap Converse's
            inner = document.get(wrapper)
            if isinstance(inner, dict):
                self._take(inner)
        model = document.get("model")
        if isinstance(model, str) and model and self.response_model is None:
            self.response_model = model[:2048]
        usage = document.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
        reason = _reason(document.get("stopReason")) or _reason(document.get("stop_reason")) \
            or _reason(document.get("completionReason")) or _reason(document.get("finish_reason"))
        delta = document.get("delta")
        if reason is None and kind == "message_delta" and isinstance(delta, dict):
            reason = _reason(delta.get("stop_reason"))
        if reason is not None:
            self.finish_reason = reason
        if "inputTextTokenCount" in document:  # Titan: text (results, or the stream's running total), embeddings
            self.input_tokens = _count(document["inputTextTokenCount"])
            results = document.get("results")
            if isinstance(results, list):
                counts = [_count(r.get("tokenCount")) for r in results if isinstance(r, dict)]
                self.output_tokens = sum(counts) if counts and None not in counts else None  # type: ignore
                for result in results:
                    if isinstance(result, dict) and _reason(result.get("completionReason")):
                        self.finish_reason = _reason(result.get("completionReason"))
            elif "totalOutputTextTokenCount" in document or "tokenCount" in document:
                self.output_tokens = _count(document.get("totalOutputTextTokenCount", document.get("tokenCount")))
        if "generation_token_count" in document:  # Llama
            prompt = _count(document.get("prompt_token_count"))
            if prompt is not None:
                self.input_tokens = prompt
            self.output_tokens = _count(document["generation_token_count"])
        for key in ("outputs", "generations"):  # Mistral, Cohere
            items = document.get(key)
            if isinstance(items, list):
                for item in items:
                    if isinstance(item, dict):
                        self.finish_reason = _reason(item.get("stop_reason")) or _reason(
                            item.get("finish_reason")) or self.finish_reason
        metrics = document.get(_METRICS)
        if isinstance(metrics, dict):
            self._metrics = metrics  # used at the end, where the family's own events said nothing

    def _usage(self, usage: dict) -> None:
        """Converse's (camelCase) or Anthropic's (snake_case) usage; both leave the cache out of input."""
        if "inputTokens" in usage or "outputTokens" in usage:
            names = ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens", "outputTokens")
            if "cacheReadInputTokenCount" in usage or "cacheWriteInputTokenCount" in usage:  # Nova's InvokeModel
                names = ("inputTokens", "cacheReadInputTokenCount", "cacheWriteInputTokenCount", "outputTokens")
        else:
            names = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")
        uncached, read, written, output = (_count(usage.get(name)) for name in names)
        if uncached is not None:
            self.input_tokens = uncached + (read or 0) + (written or 0)
            self.cache_read_tokens, self.cache_creation_tokens = read, written
        if output is not None:
            self.output_tokens = output  # cumulative in Anthropic's message_delta: the last one has the total

    def _fallbacks(self) -> None:
        """Bedrock's own counts (the last chunk's invocation metrics, the answer's headers) where the body gave none."""
        for source in (self._metrics, self._headers):
            if not source:
                continue
            if source is self._metrics:
                uncached, output = _count(source.get("inputTokenCount")), _count(source.get("outputTokenCount"))
                read = _count(source.get("cacheReadInputTokenCount"))
                written = _count(source.get("cacheWriteInputTokenCount"))
            else:
                uncached, output = source.get("input"), source.get("output")
                read, written = source.get("cache_read"), source.get("cache_write")
            if self.input_tokens is None and uncached is not None:
                self.input_tokens = uncached + (read or 0) + (written or 0)
                self.cache_read_tokens, self.cache_creation_tokens = read, written
            if self.output_tokens is None and output is not None:
                self.output_tokens = output

    # -- at the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        """Read what a JSON answer left, check a stream ended on a frame boundary (once; later calls do nothing)."""
        if self.finished:
            return
        self.finished = True
        try:
            if self._decoder is not None:
                error = self._decoder.finish()
                if error is not None and self.error_type is None:
                    self.error_event = True
                    self.error_type = CONNECTION_ERROR if error == "truncated" else c.OTHER
            elif self._size:
                self._document()
            self._fallbacks()
        except Exception:  # a malformed answer leaves fields unknown
            pass
        finally:  # its bound methods go (the decoder's among them), and with them the reference cycle
            self._events, self._first_at = self.content_events, self.first_token_at
            self.feed = unread
            self._decoder = None

    def _document(self) -> None:
        document: object = None
        if self._size <= MAX_WHOLE:
            try:
                document = json.loads(self._head)
            except ValueError:
                document = None
        else:  # too large to keep: its fields by key, the tail first (usage and finish reasons end the body)
            document = {}
            for key in _FLAT_KEYS:
                value = _value_after(self._tail, key)
                if value is None:
                    value = _value_after(self._head, key)
                if value is not None:
                    document[key] = value
        if isinstance(document, dict):
            self._take(document)
            if document.get("output") or document.get("content") or document.get("results") \
                    or document.get("generation") or document.get("embedding") or document.get("outputs") \
                    or document.get("generations"):  # Nova, Anthropic, Titan, Llama, embeddings, Mistral, Cohere
                self._events = 1

    @property
    def content_events(self) -> int:
        """Generated-content events so far: deltas, chunks carrying content (1 for a JSON answer with output)."""
        decoder = self._decoder
        return self._events + decoder.counted if decoder is not None else self._events

    @property
    def first_token_at(self) -> float:
        """When the first content event arrived (``perf_counter``), 0.0 before."""
        decoder = self._decoder
        if decoder is None or not decoder.counted:
            return self._first_at
        return min(self._first_at, decoder.first_counted_at) if self._first_at else decoder.first_counted_at


def _value_after(data: bytes, key: str) -> object:
    """The JSON value after the last ``"key":`` in a window of a document, or None (absent or cut off)."""
    quoted = b'"' + key.encode() + b'"'
    at = data.rfind(quoted)
    if at == -1:
        return None
    rest = data[at + len(quoted):].decode("utf-8", errors="replace").lstrip()
    if not rest.startswith(":"):
        return None
    try:
        return _DECODER.raw_decode(rest[1:].lstrip())[0]
    except ValueError:
        return None


def reader_for(endpoint: Endpoint, headers: Iterable[Sequence[bytes]], estimate: bool = True) -> BedrockReader:
    """The reader of a Bedrock answer (``headers`` in any case, pairs or triples), for ``LlmExchange``."""
    return BedrockReader(endpoint, headers, estimate)
