"""An app that calls AWS Bedrock through boto3 (over urllib3: calls we never see) and OpenAI through the openai
SDK (over httpx: calls we measure at the wire), as users write it: nothing here imports otel_llm_metrics."""

from __future__ import annotations

import os

import boto3
import openai
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

UPSTREAM = os.environ["UPSTREAM_URL"]
bedrock = boto3.client("bedrock-runtime", endpoint_url=UPSTREAM, region_name="us-east-1")
client = openai.AsyncOpenAI(base_url=UPSTREAM + "/v1", api_key="test-key", max_retries=0)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def ask_bedrock(request: Request) -> JSONResponse:
    answer = await run_in_threadpool(bedrock.converse, modelId="anthropic.claude-3-haiku-20240307-v1:0",
                                     messages=[{"role": "user", "content": [{"text": "Hi?"}]}])
    return JSONResponse({"answer": answer["output"]["message"]["content"][0]["text"]})


async def ask_openai(request: Request) -> JSONResponse:
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi?"}])
    return JSONResponse({"answer": answer.choices[0].message.content})


app = Starlette(routes=[Route("/health", health), Route("/bedrock", ask_bedrock, methods=["POST"]),
                        Route("/openai", ask_openai, methods=["POST"])])
