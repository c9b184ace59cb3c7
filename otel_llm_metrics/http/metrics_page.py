"""The embedded endpoint's page served on the app's own port (opt-in: OTEL_LLM_METRICS_APP_METRICS_PATH).

The page is built on a worker thread, under any async library: merging the workers' numbers takes
milliseconds, which the event loop serving requests must not wait for. The request is left out of the metrics it serves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .blocking import in_thread

logger = logging.getLogger(__name__)


async def serve_metrics_page(exposition: Callable[[str | None], tuple[bytes, str]], scope: dict[str, Any],
                             send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope.get("method") not in ("GET", "HEAD"):
        return await _respond(send, 405, b"GET or HEAD\n", "text/plain; charset=utf-8", [(b"allow", b"GET, HEAD")])
    accept = next((value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"accept"), None)
    try:
        body, content_type = await in_thread(exposition, accept)
    except Exception:
        logger.exception("otel_llm_metrics could not build the metrics page")
        return await _respond(send, 500, b"metrics unavailable; see the app's log\n", "text/plain; charset=utf-8")
    await _respond(send, 200, b"" if scope.get("method") == "HEAD" else body, content_type)


async def _respond(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, body: bytes, content_type: str,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
