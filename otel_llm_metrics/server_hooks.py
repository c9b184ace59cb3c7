"""The last push for apps that do not speak lifespan, taken from the server's own shutdown.

An app that raises on the lifespan scope is served without lifespan, so the relay never hears that
the server stops. Which path pushes its last numbers, by server:

- uvicorn, and gunicorn's UvicornWorker: uvicorn re-raises SIGTERM once its shutdown is done, which
  kills the process before ``atexit``; so ``uvicorn.server.Server.shutdown`` is extended to push once
  it has run, unless the app's lifespan shutdown (which it runs) pushed already. The server sees
  nothing else change.
- hypercorn (asyncio and trio workers) and anything else that exits normally: ``atexit``.

Every path shares one exit deadline (``Telemetry.exit_deadline``), so the exit is bounded once.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any, Protocol

logger = logging.getLogger(__name__)
_MARK = "_otel_llm_metrics_push"


class Pushing(Protocol):
    final_pushes: int

    async def push_before_exit(self) -> None: ...


_PUSHING: weakref.WeakSet[Any] = weakref.WeakSet()  # held weakly: a test may make many Telemetries


def push_when_servers_stop(telemetry: Pushing) -> None:
    """Push ``telemetry``'s last numbers when an already imported server (uvicorn) shuts down."""
    _PUSHING.add(telemetry)
    server_module = sys.modules.get("uvicorn.server")
    if server_module is not None:
        _extend_uvicorn(server_module.Server)


def _extend_uvicorn(server_class: Any) -> None:
    original = server_class.shutdown
    if getattr(original, _MARK, False):
        return

    async def shutdown(self: Any, *args: Any, **kwargs: Any) -> None:
        before = [(telemetry, telemetry.final_pushes) for telemetry in list(_PUSHING)]
        await original(self, *args, **kwargs)  # runs the app's lifespan shutdown, if it speaks lifespan
        for telemetry, pushes in before:
            if telemetry.final_pushes != pushes:
                continue  # the lifespan relay pushed already
            try:
                await telemetry.push_before_exit()
            except Exception:  # the server's shutdown goes on whatever happens here
                logger.exception("otel_llm_metrics: the final push failed")

    setattr(shutdown, _MARK, True)
    shutdown.__wrapped__ = original  # type: ignore[attr-defined]
    server_class.shutdown = shutdown
