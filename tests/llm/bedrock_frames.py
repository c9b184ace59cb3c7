"""AWS event-stream frames built from AWS's published format, and Bedrock answers made of them (test data).

A frame: total length (u32) | headers length (u32) | CRC32 of the 8 bytes before it | headers | payload |
CRC32 of everything before it. A header: name length (u8), name, type (7: string), value length (u16), value.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib


def header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    block = b"".join(header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(block) + len(payload) + 4, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, document: object) -> bytes:
    return frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps(document, separators=(",", ":")).encode())


def exception(exception_type: str, message: str = "slow down") -> bytes:
    return frame({":exception-type": exception_type, ":content-type": "application/json",
                  ":message-type": "exception"}, json.dumps({"message": message}).encode())


PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"  # Bedrock pads chunks to hide their length


def chunk(document: object) -> bytes:
    """An InvokeModelWithResponseStream ``chunk`` event carrying one of the family's own events."""
    inner = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
    return event("chunk", {"bytes": inner, "p": PADDING[:len(inner) % 40]})


def converse_stream_frames(deltas: int = 3, usage: dict | None = None, stop: str = "end_turn") -> list[bytes]:
    """messageStart, ``deltas`` contentBlockDelta, contentBlockStop, messageStop, metadata (usage 9 in / 3 out)."""
    frames = [event("messageStart", {"role": "assistant"})]
    frames += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": f"word{i} "}})
               for i in range(deltas)]
    frames += [event("contentBlockStop", {"contentBlockIndex": 0}), event("messageStop", {"stopReason": stop}),
               event("metadata", {"usage": usage or {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12},
                                  "metrics": {"latencyMs": 120}})]
    return frames


def converse_stream(deltas: int = 3, usage: dict | None = None, stop: str = "end_turn") -> bytes:
    """The frames of ``converse_stream_frames``, one stream."""
    return b"".join(converse_stream_frames(deltas, usage, stop))


ANTHROPIC_STREAM_EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                          "model": "claude-3-5-haiku-20241022", "content": [], "stop_reason": None,
                                          "usage": {"input_tokens": 11, "output_tokens": 1,
                                                    "cache_read_input_tokens": 5}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 6}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 11, "outputTokenCount": 6,
                                                                  "invocationLatency": 300, "firstByteLatency": 90}},
]


def anthropic_invoke_stream() -> bytes:
    return b"".join(chunk(document) for document in ANTHROPIC_STREAM_EVENTS)


ANTHROPIC_MESSAGE = {"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
                     "content": [{"type": "text", "text": "Hi!"}], "stop_reason": "max_tokens",
                     "usage": {"input_tokens": 13, "output_tokens": 5, "cache_creation_input_tokens": 2}}
CONVERSE_ANSWER = {"output": {"message": {"role": "assistant", "content": [{"text": "Hello!"}]}},
                   "stopReason": "end_turn", "usage": {"inputTokens": 7, "outputTokens": 4, "totalTokens": 11},
                   "metrics": {"latencyMs": 42}}

# Amazon Nova through InvokeModel: its own body (Converse's shape, with cache counts named ...TokenCount), and
# InvokeModelWithResponseStream's chunks carrying Converse-like events, the last with Bedrock's invocation metrics.
NOVA_MESSAGE = {"output": {"message": {"role": "assistant", "content": [{"text": "Hi there!"}]}},
                "stopReason": "max_tokens",
                "usage": {"inputTokens": 21, "outputTokens": 8, "totalTokens": 39, "cacheReadInputTokenCount": 10,
                          "cacheWriteInputTokenCount": 0}}
NOVA_STREAM_EVENTS = [
    {"messageStart": {"role": "assistant"}},
    {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}},
    {"contentBlockDelta": {"delta": {"text": "lo"}, "contentBlockIndex": 0}},
    {"contentBlockDelta": {"delta": {"text": " you"}, "contentBlockIndex": 0}},
    {"contentBlockStop": {"contentBlockIndex": 0}},
    {"messageStop": {"stopReason": "end_turn"}},
    {"metadata": {"usage": {"inputTokens": 12, "outputTokens": 4, "cacheReadInputTokenCount": 6,
                            "cacheWriteInputTokenCount": 2}, "metrics": {}, "trace": {}},
     "amazon-bedrock-invocationMetrics": {"inputTokenCount": 12, "outputTokenCount": 4, "invocationLatency": 210,
                                          "firstByteLatency": 70, "cacheReadInputTokenCount": 6,
                                          "cacheWriteInputTokenCount": 2}},
]


def nova_invoke_stream() -> bytes:
    return b"".join(chunk(document) for document in NOVA_STREAM_EVENTS)
