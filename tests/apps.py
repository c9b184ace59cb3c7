"""Real Starlette/FastAPI apps that the unit tests drive through the ASGI protocol."""

from __future__ import annotations

import anyio
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route


class AppError(Exception):
    pass


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"item": request.path_params["item_id"]})


async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(str(len(body)))


async def stream(request: Request) -> StreamingResponse:
    n = int(request.query_params.get("n", "100"))
    delay = float(request.query_params.get("delay", "0"))
    fail_after = int(request.query_params.get("fail_after", "-1"))
    timeout_after = int(request.query_params.get("timeout_after", "-1"))

    async def events():
        for i in range(n):
            if i == fail_after:
                raise AppError("upstream broke mid-stream")
            if i == timeout_after:
                raise TimeoutError("upstream too slow")
            await anyio.sleep(delay)
            yield f"data: {i}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def boom(request: Request) -> None:
    raise AppError("before any header")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app() -> Starlette:
    return Starlette(routes=[
        Route("/items/{item_id}", item), Route("/echo", echo, methods=["POST"]), Route("/stream", stream),
        Route("/boom", boom), Route("/health", health), Route("/internal/x", health),
        Mount("/api", routes=[Route("/items/{item_id}", item)]),
    ])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict:
        return {"item": item_id}

    @app.get("/stream")
    async def fastapi_stream(n: int = 10) -> StreamingResponse:
        async def events():
            for i in range(n):
                await anyio.sleep(0)
                yield f"data: {i}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    return app
