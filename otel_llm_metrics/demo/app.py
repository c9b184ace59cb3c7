"""An OpenAI-compatible chat API over the simulated upstream, with no instrumentation code in it.

``opentelemetry-instrument uvicorn otel_llm_metrics.demo.app:app`` instruments it with zero code;
tests also wrap it with ``setup()``. Upstream calls go through a ConcurrencyLimiter so that the
queue at the upstream is visible.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import tempfile
import time
from typing import Any

import sqlalchemy
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

from otel_llm_metrics import ConcurrencyLimiter, cached
from otel_llm_metrics.demo.upstream import SimulatedUpstream, UpstreamError, count_tokens

MODEL = "demo-model"
app = FastAPI(title="otel_llm_metrics demo")
upstream = SimulatedUpstream.from_env()
limiter = ConcurrencyLimiter(int(os.environ.get("DEMO_UPSTREAM_CONCURRENCY", "4")), name="upstream")
_ids = itertools.count(1)
# A usage ledger in SQLite through a SQLAlchemy QueuePool: with zero code its pool is observed as
# db.client.connection.* (pool "sqlite/<file>"); writes run in a thread, off the event loop.
_ledger = sqlalchemy.create_engine(f"sqlite:///{tempfile.mkdtemp(prefix='demo-')}/usage.db", pool_size=4,
                                   max_overflow=0)
with _ledger.begin() as _conn:
    _conn.exec_driver_sql("create table usage (model text, prompt_tokens int, completion_tokens int)")


def _record_usage(model: str, prompt_tokens: int, completion_tokens: int) -> None:
    with _ledger.begin() as conn:
        conn.exec_driver_sql("insert into usage values (?, ?, ?)", (model, prompt_tokens, completion_tokens))


@cached("model-catalog", maxsize=64)
def _model_info(model: str) -> dict:
    """A lookup worth caching in a real app (a registry call); counted as cache hits and misses."""
    return {"id": model, "context_window": 8192}


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
    _model_info(model)
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
    await asyncio.to_thread(_record_usage, model, prompt_tokens, max_tokens)
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


@app.post("/v1/messages")
async def anthropic_messages(request: Request) -> Any:
    """The Anthropic Messages API: SSE events when streaming, one message otherwise.

    A ``system`` prompt is reported as read from the prompt cache (as a provider with caching would
    after the first call), so cache-read input tokens show up in the metrics.
    """
    body = await request.json()
    messages = body.get("messages") or []
    if not isinstance(messages, list) or not messages:
        return JSONResponse({"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "messages: at least one message is required"}},
                            status_code=400)
    uncached = sum(count_tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    cached = count_tokens(_text_of(body.get("system")))
    max_tokens = int(body.get("max_tokens") or 16)
    model = str(body.get("model") or "demo-claude")
    message_id = f"msg_demo{next(_ids)}"
    usage = {"input_tokens": uncached, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}
    if not body.get("stream"):
        async with limiter:
            text = "".join([t async for t in upstream.generate(uncached, max_tokens)])
        return {"id": message_id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens", "stop_sequence": None,
                "usage": {**usage, "output_tokens": max_tokens}}

    def event(kind: str, payload: dict) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload}, separators=(',', ':'))}\n\n"

    async def events():
        yield event("message_start", {"message": {"id": message_id, "type": "message", "role": "assistant",
                                                  "content": [], "model": model, "stop_reason": None,
                                                  "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})
        yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        yield event("ping", {})
        async with limiter:
            async for token in upstream.generate(uncached, max_tokens):
                yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": token}})
        yield event("content_block_stop", {"index": 0})
        yield event("message_delta", {"delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                                      "usage": {"output_tokens": max_tokens}})
        yield event("message_stop", {})

    return StreamingResponse(events(), media_type="text/event-stream")


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text blocks of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


@app.post("/v1/completions")
async def completions(request: Request) -> Any:
    """The legacy text completions API (non-streamed), with usage."""
    body = await request.json()
    prompt = str(body.get("prompt") or "")
    max_tokens = int(body.get("max_tokens") or 16)
    prompt_tokens = count_tokens(prompt)
    async with limiter:
        text = "".join([t async for t in upstream.generate(prompt_tokens, max_tokens)])
    return {"id": f"cmpl-{next(_ids)}", "object": "text_completion", "created": int(time.time()),
            "model": str(body.get("model") or MODEL),
            "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
                      "total_tokens": prompt_tokens + max_tokens}}


@app.post("/v1/embeddings")
async def embeddings(request: Request) -> Any:
    body = await request.json()
    inputs = body.get("input") or []
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    tokens = sum(count_tokens(str(item)) for item in inputs)
    data = [{"object": "embedding", "index": i, "embedding": [round(0.001 * (i + j), 3) for j in range(64)]}
            for i in range(len(inputs))]
    return {"object": "list", "data": data, "model": str(body.get("model") or "demo-embed"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@app.post("/api/chat")
async def ollama_chat(request: Request) -> Any:
    """Ollama's native chat API: NDJSON when streaming (its default), one JSON object otherwise."""
    body = await request.json()
    prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in body.get("messages") or []
                        if isinstance(m, dict))
    return await _ollama(body, prompt_tokens, lambda token: {"message": {"role": "assistant", "content": token}})


@app.post("/api/generate")
async def ollama_generate(request: Request) -> Any:
    body = await request.json()
    return await _ollama(body, count_tokens(str(body.get("prompt") or "")), lambda token: {"response": token})


async def _ollama(body: dict, prompt_tokens: int, piece) -> Any:
    model = str(body.get("model") or "demo-llama")
    max_tokens = int((body.get("options") or {}).get("num_predict") or 16)
    started = time.monotonic_ns()

    def line(fields: dict) -> str:
        return json.dumps({"model": model, "created_at": "2026-11-22T00:00:00Z", **fields},
                          separators=(",", ":")) + "\n"

    def final(text: str | None) -> dict:
        last = piece("" if text is None else text)
        return {**last, "done": True, "done_reason": "length", "total_duration": time.monotonic_ns() - started,
                "prompt_eval_count": prompt_tokens, "eval_count": max_tokens}

    if body.get("stream", True) is False:
        async with limiter:
            text = "".join([t async for t in upstream.generate(prompt_tokens, max_tokens)])
        return JSONResponse(json.loads(line(final(text))))

    async def lines():
        async with limiter:
            async for token in upstream.generate(prompt_tokens, max_tokens):
                yield line({**piece(token), "done": False})
        yield line(final(None))

    return StreamingResponse(lines(), media_type="application/x-ndjson")
