"""An Ollama ``/api/chat`` upstream that keeps its body open after its last line, for ``proxy_app.py`` with
``PROXY_DONE_EARLY=1``: the proxy's final (empty) body message can only come after its client has gone. The
OpenAI SDK closes the connection at ``[DONE]``, so the disconnect always reaches the server first, the order a
public proxy of this shape showed 1 or 2 times in 8 (issue 26). No instrumentation code."""

from __future__ import annotations

import json

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

WORDS = ("the", "model", "streams", "tokens", "to", "a", "client", "that", "reads")
app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/api/chat")
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


def _ndjson(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":")) + "\n"
