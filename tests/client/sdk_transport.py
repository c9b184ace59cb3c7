"""A scripted provider inside the client: an httpx2 transport that answers each request with the next answer of a
list (a 429 with rate-limit headers, or a wire transcript), streamed, so the SDKs run over it unchanged."""

from __future__ import annotations

import threading

import httpx2

from tests.llm.test_transcripts import HERE

RATE_LIMITED = (429, [("content-type", "application/json"), ("retry-after-ms", "1"),
                      ("x-ratelimit-remaining-requests", "0")],
                b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}')
OPENAI_CHAT = (200, [("content-type", "application/json")], (HERE / "openai_chat.json").read_bytes())
ANTHROPIC_MESSAGE = (200, [("content-type", "application/json")], (HERE / "anthropic_messages.json").read_bytes())


class Script(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Answers the n-th request with ``answers[n]`` (the last one again once they run out); counts requests."""

    def __init__(self, *answers: tuple[int, list, bytes]) -> None:
        self.answers = answers
        self.requests = 0
        self._lock = threading.Lock()

    def _next(self) -> httpx2.Response:
        with self._lock:
            status, headers, body = self.answers[min(self.requests, len(self.answers) - 1)]
            self.requests += 1
        return httpx2.Response(status, headers=headers, stream=_Body(body))

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self._next()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return self._next()


class _Body(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self):
        yield self.body

    async def __aiter__(self):
        yield self.body
