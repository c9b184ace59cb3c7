"""A relaying OpenAI-to-Ollama proxy that is still busy after its ``[DONE]``, and an upstream for it.

``app`` is shaped like ``proxy_app.py`` (SSE sent as ``text/plain``, default ``json.dumps``
separators) but, as many relays do, writes ``data: [DONE]`` as soon as Ollama's last line arrives and
then reads its upstream to the end. ``upstream`` answers Ollama's ``/api/chat`` and keeps its body
open after that last line, so the proxy's final (empty) body message can only come after its client
has gone. The OpenAI SDK closes the connection at ``[DONE]``: the disconnect always reaches the
server first, the order that a public proxy of this shape showed 1 or 2 times in 8 (issue 26).
Neither has instrumentation code; the tests run ``app`` under ``opentelemetry-instrument``.
"""

from __future__ import annotations

import json
import os

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:11434")
WORDS = ("the", "model", "streams", "tokens", "to", "a", "client", "that", "reads")
app = FastAPI()
upstream = FastAPI()


@app.get("/health")
@upstream.get("/health")
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
                base = {"id": "relay-1", "object": "chat.completion.chunk", "model": event.get("model")}
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
                yield "data: [DONE]\n\n"  # the answer is over; the upstream's body is read on to its end

    return StreamingResponse(translate(), media_type="text/plain")


@upstream.post("/api/chat")
async def ollama_chat(request: Request) -> StreamingResponse:
    body = await request.json()
    model = body.get("model")
    count = int((body.get("options") or {}).get("num_predict") or 9)

    async def lines():
        yield _ndjson({"model": model, "message": {"role": "assistant", "content": ""}, "done": False})
        for i in range(count):
            yield _ndjson({"model": model, "message": {"role": "assistant", "content": WORDS[i % len(WORDS)] + " "},
                           "done": False})
        yield _ndjson({"model": model, "message": {"role": "assistant", "content": ""}, "done": True,
                       "done_reason": "length", "prompt_eval_count": 4, "eval_count": count})
        await anyio.Event().wait()  # the body stays open until the proxy leaves

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _ndjson(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":")) + "\n"
