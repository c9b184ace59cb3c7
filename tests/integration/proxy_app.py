"""A proxy-shaped app: an OpenAI-compatible front over an Ollama-style NDJSON upstream.

Like many real gateways it translates on the fly: each upstream NDJSON line becomes an OpenAI
SSE chunk, and Ollama's final counts become the usage chunk when the client asked for it. It has
no instrumentation code; the tests run it under ``opentelemetry-instrument``.

``PROXY_DONE_EARLY=1``: as many relays do, it writes ``data: [DONE]`` as soon as Ollama's last line arrives and
then reads its upstream to the end (``held_upstream.py`` keeps that body open, so the client always leaves first).
"""

from __future__ import annotations

import json
import os

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:11434")
# Many hand-written proxies stream SSE as text/plain, or with no media type at all ("none").
MEDIA_TYPE = os.environ.get("PROXY_MEDIA_TYPE", "text/event-stream")
DONE_EARLY = bool(os.environ.get("PROXY_DONE_EARLY"))
app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat(request: Request) -> StreamingResponse:
    body = await request.json()
    upstream_body = {"model": body.get("model"), "messages": body.get("messages", []), "stream": True,
                     "options": {"num_predict": body.get("max_tokens", 16)}}
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def translate():
        async with httpx.AsyncClient(base_url=UPSTREAM, timeout=30) as client, \
                client.stream("POST", "/api/chat", json=upstream_body) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                base = {"id": "proxy-1", "object": "chat.completion.chunk", "model": event.get("model")}
                if not event.get("done"):
                    content = (event.get("message") or {}).get("content", "")
                    yield _sse({**base, "choices": [{"index": 0, "delta": {"content": content},
                                                     "finish_reason": None}]})
                    continue
                yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": event.get("done_reason")}]})
                if include_usage:
                    prompt, completion = event.get("prompt_eval_count", 0), event.get("eval_count", 0)
                    yield _sse({**base, "choices": [], "usage": {"prompt_tokens": prompt,
                                                                 "completion_tokens": completion,
                                                                 "total_tokens": prompt + completion}})
                if DONE_EARLY:
                    yield "data: [DONE]\n\n"  # the answer is over; the upstream's body is read on to its end
        if not DONE_EARLY:
            yield "data: [DONE]\n\n"

    return StreamingResponse(translate(), media_type=None if MEDIA_TYPE == "none" else MEDIA_TYPE)


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"  # default separators, as many Python servers write
