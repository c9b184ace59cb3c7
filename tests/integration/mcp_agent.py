"""An agent script with no telemetry code at all: run as ``opentelemetry-instrument python mcp_agent.py URL``.

It talks to an MCP server the way most agents do, with the ``mcp`` SDK's streamable-HTTP transport and a
``ClientSession``: initialize, tools/list, then three tool calls (one that works, one whose result is marked
isError, one the server does not know), and leaves, which ends the session with a DELETE. It prints one JSON line
of what each call returned or raised, so that the test can tell the SDK's view from what was measured.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

CALLS = (("add", {"a": 2, "b": 3}), ("refuse", {"reason": "policy"}), ("nosuch", {}))


async def run(url: str) -> list:
    outcomes: list = []
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        initialized = await session.initialize()
        outcomes.append(["initialize", initialized.protocol_version])
        tools = await session.list_tools()
        outcomes.append(["tools/list", sorted(tool.name for tool in tools.tools)])
        for name, arguments in CALLS:
            try:
                result: Any = await session.call_tool(name, arguments)
                outcomes.append([name, "isError" if result.is_error else "ok"])
            except Exception as error:  # noqa: BLE001 - what the SDK raised is what the agent saw
                outcomes.append([name, f"raised {type(error).__name__}"])
    return outcomes


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(sys.argv[1]))), flush=True)
