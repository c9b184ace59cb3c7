"""A RAG back-end as users write it, unmodified (nothing imports otel_llm_metrics): FastAPI, its /ask calls an
OpenAI-compatible provider through the official SDK (streamed and not, no retries), answers its own JSON;
/ask?model=... asks with retries; /v1/chat/completions relays the provider's stream, as a gateway does."""

import os

import httpx2
import openai
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI()
UPSTREAM = os.environ["UPSTREAM_URL"]
client = openai.AsyncOpenAI(base_url=UPSTREAM + "/v1", api_key="test-key", max_retries=0)
retrying = openai.AsyncOpenAI(base_url=UPSTREAM + "/v1", api_key="test-key", max_retries=2)
relay_client = httpx2.AsyncClient(base_url=UPSTREAM)


@app.get("/health")
async def health() -> dict:
    return {"ok": True}


@app.post("/ask")
async def ask(stream: bool = False, model: str | None = None) -> dict:
    messages = [{"role": "system", "content": "Answer from the documents."}, {"role": "user", "content": "Hi?"}]
    if model is not None:
        answer = await retrying.chat.completions.create(model=model, messages=messages)
        return {"answer": answer.choices[0].message.content}
    if not stream:
        answer = await client.chat.completions.create(model="openai_chat", messages=messages)
        return {"answer": answer.choices[0].message.content}
    parts = []
    async for chunk in await client.chat.completions.create(model="openai_chat_stream_usage", messages=messages,
                                                            stream=True, stream_options={"include_usage": True}):
        parts += [choice.delta.content or "" for choice in chunk.choices]
    return {"answer": "".join(parts)}


@app.post("/v1/chat/completions")
async def relay(request: Request) -> StreamingResponse:
    body = await request.body()

    async def pieces():
        async with relay_client.stream("POST", "/v1/chat/completions", content=body) as answer:
            async for chunk in answer.aiter_raw():
                yield chunk
    return StreamingResponse(pieces(), media_type="text/event-stream")
