"""An OpenAI-compatible chat API over the simulated upstream, with no instrumentation code in it.

``opentelemetry-instrument uvicorn otel_llm_metrics.demo.app:app`` instruments it with zero code;
tests also wrap it with ``setup()``. Upstream calls go through a ConcurrencyLimiter so that the
queue at the upstream is visible.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

from otel_llm_metrics import ConcurrencyLimiter
from otel_llm_metrics.demo.upstream import SimulatedUpstream, UpstreamError, count_tokens

MODEL = "demo-model"
app = FastAPI(title="otel_llm_metrics demo")
upstream = SimulatedUpstream.from_env()
limiter = ConcurrencyLimiter(int(os.environ.get("DEMO_UPSTREAM_CONCURRENCY", "4")), name="upstream")
_ids = itertools.count(1)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.get("/v1/models")
async def models() -> dict:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "demo"}]}


@app.post("/admin/fault")
async def set_fault(fail_rate: float = 0.0) -> dict:
    """Fault injection for alert tests: the share of upstream calls that fail."""
    upstream.fail_rate = max(0.0, min(1.0, fail_rate))
    return {"fail_rate": upstream.fail_rate}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    body = await request.json()
    messages = body.get("messages") or []
    if not isinstance(messages, list) or not messages:
        raise HTTPException(status_code=400, detail="messages must be a non-empty list")
    prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    max_tokens = int(body.get("max_tokens") or 16)
    model = str(body.get("model") or MODEL)
    completion_id = f"chatcmpl-{next(_ids)}"
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_stream(completion_id, model, prompt_tokens, max_tokens, include_usage),
                                 media_type="text/event-stream")
    try:
        async with limiter:
            text = "".join([t async for t in upstream.generate(prompt_tokens, max_tokens)])
    except UpstreamError as exc:
        return JSONResponse({"error": {"message": str(exc), "type": "upstream_error"}}, status_code=502)
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
                  "total_tokens": prompt_tokens + max_tokens},
    }


async def _stream(completion_id: str, model: str, prompt_tokens: int, max_tokens: int, include_usage: bool):
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async with limiter:
        try:
            async for token in upstream.generate(prompt_tokens, max_tokens):
                yield chunk({"content": token})
        except UpstreamError as exc:
            yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'upstream_error'}})}\n\n"
            raise
    yield chunk({}, "length")
    if include_usage:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
                 "total_tokens": prompt_tokens + max_tokens}
        yield f"data: {json.dumps({'id': completion_id, 'object': 'chat.completion.chunk', 'created': created, 'model': model, 'choices': [], 'usage': usage}, separators=(',', ':'))}\n\n"  # noqa: E501
    yield "data: [DONE]\n\n"
