"""An agent calling an MCP server with the ``mcp`` SDK's streamable-HTTP client (httpx2 underneath).

``python -m tests.integration.mcp_client URL MODE [measured]``: makes the test calls and prints one JSON object:
what each call returned or raised (to compare with and without the package) and, when measured (with
``otel_llm_metrics.setup()``), this process's own Prometheus exposition (the calls made).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


def _shown(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump is not None else repr(value)


async def calls(url: str, mode: str) -> list:
    from mcp.client.client import Client

    outcomes: list = []

    async def step(name: str, call: Any) -> None:
        try:
            outcomes.append([name, "returned", _shown(await call)])
        except Exception as error:  # noqa: BLE001 - what the SDK raised is part of what is compared
            outcomes.append([name, "raised", f"{type(error).__module__}.{type(error).__qualname__}: {error}"])

    async with Client(url, mode=mode) as client:
        await step("tools/list", client.list_tools())
        await step("add", client.call_tool("add", {"a": 2, "b": 3}))
        await step("refuse", client.call_tool("refuse", {"reason": "policy"}))
        await step("explode", client.call_tool("explode", {}))
        await step("nosuch", client.call_tool("nosuch", {}))
        await step("resources/read", client.read_resource("data://greeting"))
        await step("prompts/get", client.get_prompt("summarise", {"topic": "metrics"}))
    return outcomes


def main() -> None:
    url, mode = sys.argv[1], sys.argv[2]
    telemetry = None
    if sys.argv[3:] == ["measured"]:
        import otel_llm_metrics

        telemetry = otel_llm_metrics.setup()
    outcomes = asyncio.run(calls(url, mode))
    exposition = telemetry.exposition()[0].decode() if telemetry is not None else ""
    print(json.dumps({"outcomes": outcomes, "exposition": exposition}))


if __name__ == "__main__":
    main()
