"""MCP servers for the integration tests, unmodified apps served by uvicorn.

- ``fastmcp_app``: FastMCP's ``http_app()`` (Starlette, streamable HTTP, answers as SSE), mounted at /mcp.
- ``lowlevel_app``: the ``mcp`` SDK's low-level ``Server`` with ``json_response=True`` (answers as JSON), at
  /tools/rpc (any path: the middleware recognises MCP by the body, not by a path).
- ``fastmcp_stateless_app`` and ``lowlevel_stateless_app``: the same tools served stateless (FastMCP's
  ``stateless_http=True``, the SDK's ``StreamableHTTPSessionManager(stateless=True)``): a fresh transport per request,
  no ``Mcp-Session-Id``, so no session to open, keep or end.
All answer ``GET /health`` for the readiness probe. The ``*_setup`` variants are the same apps with
``otel_llm_metrics.setup()`` instead of zero code.
"""

from __future__ import annotations

import contextlib

import mcp_types as types
from fastmcp import FastMCP
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

# -- FastMCP ---------------------------------------------------------------------------------------
fast = FastMCP("tools-demo")


@fast.tool
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@fast.tool
def refuse(reason: str) -> str:
    """Fails as a tool result (isError), not as a JSON-RPC error."""
    from fastmcp.exceptions import ToolError

    raise ToolError(f"refused: {reason}")


@fast.tool
def explode() -> str:
    """Raises: FastMCP answers with a tool result marked isError."""
    raise RuntimeError("exploded")


@fast.resource("data://greeting")
def greeting() -> str:
    return "hello"


@fast.prompt
def summarise(topic: str) -> str:
    return f"Summarise {topic}"


async def health(_request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _fastmcp_app(stateless: bool = False) -> Starlette:
    inner = fast.http_app(path="/", stateless_http=stateless)
    return Starlette(routes=[Route("/health", health), Mount("/mcp", app=inner)], lifespan=inner.lifespan)


fastmcp_app = _fastmcp_app()
fastmcp_stateless_app = _fastmcp_app(stateless=True)  # its session manager starts with the app served, not here


# -- the mcp SDK's low-level server ----------------------------------------------------------------
async def _list_tools(_ctx: object, _params: object) -> types.ListToolsResult:
    schema = {"type": "object"}
    return types.ListToolsResult(tools=[types.Tool(name=name, inputSchema=schema) for name in ("add", "refuse",
                                                                                              "explode")])


async def _call_tool(_ctx: object, params: types.CallToolRequestParams) -> types.CallToolResult:
    arguments = params.arguments or {}
    if params.name == "add":
        return types.CallToolResult(content=[types.TextContent(text=str(arguments["a"] + arguments["b"]))])
    if params.name == "refuse":
        return types.CallToolResult(content=[types.TextContent(text="refused")], isError=True)
    if params.name == "explode":
        raise RuntimeError("exploded")  # the SDK answers a JSON-RPC error
    raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")


async def _list_resources(_ctx: object, _params: object) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=[types.Resource(uri="data://greeting", name="greeting")])


async def _read_resource(_ctx: object, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=str(params.uri), text="hello")])


async def _get_prompt(_ctx: object, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    text = f"Summarise {(params.arguments or {}).get('topic')}"
    return types.GetPromptResult(messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))])


async def _list_prompts(_ctx: object, _params: object) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=[types.Prompt(name="summarise")])


low = Server("lowlevel-demo", on_list_tools=_list_tools, on_call_tool=_call_tool, on_list_resources=_list_resources,
             on_read_resource=_read_resource, on_get_prompt=_get_prompt, on_list_prompts=_list_prompts)


def _lowlevel_app() -> Starlette:
    inner = low.streamable_http_app(streamable_http_path="/", json_response=True)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):  # noqa: ANN202 - the session manager runs for the app's life
        async with low.session_manager.run():
            yield

    return Starlette(routes=[Route("/health", health), Mount("/tools/rpc", app=inner)], lifespan=lifespan)


lowlevel_app = _lowlevel_app()


def _lowlevel_stateless_app() -> Starlette:
    """The SDK's session manager built directly, stateless and answering JSON (``low.session_manager`` stays the
    stateful app's)."""
    manager = StreamableHTTPSessionManager(app=low, stateless=True, json_response=True)

    async def rpc(scope: dict, receive: object, send: object) -> None:
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):  # noqa: ANN202 - the session manager runs for the app's life
        async with manager.run():
            yield

    return Starlette(routes=[Route("/health", health), Mount("/stateless/rpc", app=rpc)], lifespan=lifespan)


lowlevel_stateless_app = _lowlevel_stateless_app()
