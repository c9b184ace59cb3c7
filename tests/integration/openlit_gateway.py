"""A gateway that uses OpenLIT for its upstream calls, as some users do, under our zero code.

OpenLIT records its client-side timings as ``gen_ai.server.time_to_first_token`` and friends on
whatever MeterProvider is global (ours): those copies must not mix with what we measure.
"""

from __future__ import annotations

import os

import openai
import openlit
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

openlit.init(application_name="gateway", disable_batch=True, collect_gpu_stats=False)
upstream = openai.AsyncOpenAI(base_url=os.environ["UPSTREAM_URL"] + "/v1", api_key="unused", max_retries=0)
app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat(request: Request) -> StreamingResponse:
    body = await request.json()
    stream = await upstream.chat.completions.create(model=body["model"], messages=body["messages"],
                                                    max_tokens=body.get("max_tokens", 8), stream=True,
                                                    stream_options={"include_usage": True})

    async def relay():
        async for chunk in stream:
            yield f"data: {chunk.model_dump_json()}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(relay(), media_type="text/event-stream")
