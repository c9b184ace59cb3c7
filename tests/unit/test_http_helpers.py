"""http/routes.py and http/request_id.py on real Starlette routes and real forks."""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from otel_llm_metrics.http import request_id
from otel_llm_metrics.http.routes import route_template


def _matched(path: str) -> dict:
    """Run a real Starlette router on ``path`` and return the scope it handed the endpoint."""
    seen: dict = {}

    async def endpoint(request) -> PlainTextResponse:
        seen.update(request.scope)
        return PlainTextResponse("ok")

    app = Starlette(routes=[
        Route("/items/{item_id}", endpoint),
        Mount("/api/v1", routes=[Route("/models/{name}", endpoint)]),
        Mount("/tenants/{tenant}", routes=[Route("/chat", endpoint)]),
    ])

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [], "query_string": b"",
             "app": app}
    asyncio.run(app(scope, receive, send))
    return seen


def test_a_matched_route_gives_its_template_never_the_raw_path():
    assert route_template(_matched("/items/42"), "") == "/items/{item_id}"


def test_a_static_mount_keeps_its_path_and_a_parametrised_one_is_bounded():
    assert route_template(_matched("/api/v1/models/llama"), "") == "/api/v1/models/{name}"
    assert route_template(_matched("/tenants/acme/chat"), "") == "/{mount}/chat", "no client value in a label"


def test_no_route_means_no_template():
    assert route_template({"type": "http", "path": "/nowhere"}, "") is None


def test_well_formed_incoming_ids_are_kept_and_others_refused():
    assert request_id.sanitised(b"req-123:abc/DEF=") == b"req-123:abc/DEF="
    assert request_id.sanitised(b"x" * 129) is None, "too long"
    assert request_id.sanitised(b"bad id\r\ninjected: 1") is None, "no spaces or line breaks"
    assert request_id.sanitised(b"") is None


def test_new_ids_are_unique_and_a_forked_child_gets_its_own_prefix():
    ids = {request_id.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    parent_prefix = request_id.new_request_id().split(b"-")[0]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_end, request_id.new_request_id())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = os.read(read_end, 100)
    assert child.split(b"-")[0] != parent_prefix and child.endswith(b"-1")
