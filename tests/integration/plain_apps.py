"""Unmodified apps for the zero-code tests: nothing here imports otel_llm_metrics."""

import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    """Says which worker answered (the x-worker-pid header), for tests that spread load over workers."""
    return PlainTextResponse(f"hello {request.path_params['name']}", headers={"x-worker-pid": str(os.getpid())})


async def health(request):
    return PlainTextResponse("ok")


starlette_app = Starlette(routes=[Route("/hello/{name}", hello), Route("/health", health)])


async def bare_app(scope, receive, send):
    """A bare ASGI callable: no framework, no routes, no lifespan support."""
    if scope["type"] != "http":
        raise RuntimeError("http only")
    body = b"bare"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def failing_start_up(scope, receive, send):
    """An app whose start-up fails before it says anything (a database that is down)."""
    if scope["type"] == "lifespan":
        await receive()
        raise ConnectionRefusedError("the database is down")
    await bare_app(scope, receive, send)
