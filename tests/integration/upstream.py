"""A local LLM provider for the SDK tests: answers with the wire transcripts of tests/llm/transcripts/.

The model an SDK asks for names the transcript (``model="openai_chat_stream_usage"``); Gemini's
model is in the path. ``flaky-<n>``: the first <n> calls answer 429 with ``retry-after`` and
rate-limit headers (remaining requests 0), then the chat transcript answers. Streams are sent event
by event, as providers send them. uvicorn runs it in a thread on a free loopback port.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import uvicorn

from tests.integration.servers import free_port, wait_for

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "llm" / "transcripts"
TRUTH = json.loads((TRANSCRIPTS / "truth.json").read_text())
_EVENT = re.compile(rb".*?(?:\n\r?\n|\n(?=[\[{,\]])|\Z)", re.S)  # SSE events, NDJSON lines, array elements
RATE_LIMITS = [(b"x-ratelimit-limit-requests", b"500"), (b"x-ratelimit-remaining-requests", b"0"),
               (b"x-ratelimit-limit-tokens", b"30000"), (b"x-ratelimit-remaining-tokens", b"29000"),
               (b"retry-after", b"0")]
ANTHROPIC_LIMITS = [(b"anthropic-ratelimit-requests-limit", b"50"), (b"anthropic-ratelimit-requests-remaining", b"49"),
                    (b"anthropic-ratelimit-input-tokens-remaining", b"0")]


def transcript(stem: str) -> tuple[str, dict, bytes]:
    name = next(name for name in TRUTH if name.rsplit(".", 1)[0] == stem)
    return name, TRUTH[name], (TRANSCRIPTS / name).read_bytes()


def pieces(body: bytes) -> list[bytes]:
    return [piece for piece in _EVENT.findall(body) if piece]


class Upstream:
    """The provider, counting the calls it got per model."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: dict[str, int] = {}
        self.delay = 0.0  # seconds before answering (a slow provider)
        self.event_gap = 0.0  # seconds between a stream's events (a provider generating)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning",
                                interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="llm-upstream", daemon=True)

    def start(self) -> Upstream:
        self.thread.start()
        wait_for(lambda: self.server.started, "the local LLM provider serving")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def app(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.delay:
            import anyio

            await anyio.sleep(self.delay)
        path = scope["path"]
        # Gemini names the model in the path (.../models/{stem}:method), the others in the body
        model = path.rsplit("/", 1)[1].split(":", 1)[0] if ":" in path else json.loads(body or b"{}").get("model", "")
        self.calls[model] = self.calls.get(model, 0) + 1
        extra: list[tuple[bytes, bytes]] = []
        if model.startswith("flaky-"):
            if self.calls[model] <= int(model.split("-")[1]):
                error = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}'
                await send({"type": "http.response.start", "status": 429,
                            "headers": [(b"content-type", b"application/json"), *RATE_LIMITS]})
                await send({"type": "http.response.body", "body": error})
                return
            model, extra = "openai_chat", RATE_LIMITS[:4]
        if path.endswith("/v1/messages"):
            extra = ANTHROPIC_LIMITS
        _, truth, data = transcript(model)
        status = 429 if model == "gemini_429" else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", truth["content_type"].encode()), *extra]})
        for piece in pieces(data):
            if self.event_gap:
                import anyio

                await anyio.sleep(self.event_gap)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
