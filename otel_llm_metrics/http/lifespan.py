"""The ASGI lifespan scope: the server's word that it is stopping, the last moment to push numbers.

uvicorn re-raises SIGTERM once its shutdown is done, killing the process before ``atexit``; gunicorn's
workers stop the same way. Every ASGI server runs the lifespan shutdown after its last request, so
the final numbers and spans are pushed there (within the shutdown timeout) before the app's
``lifespan.shutdown.complete`` reaches the server. An app that does not speak lifespan (a bare ASGI
callable that raises on it, or ignores it) gets it spoken for it, so it is flushed too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)
Message = dict[str, Any]
_DONE = ("lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed")


class Stopping(Protocol):
    """What the relay needs of the running instrumentation (``runtime.Telemetry``)."""

    settings: Any

    def ensure_serving(self) -> None: ...

    def serving_stopped(self) -> None: ...

    def flush(self) -> None: ...


class LifespanRelay:
    def __init__(self, app: Callable[..., Awaitable[None]], host: Stopping) -> None:
        self.app = app
        self.host = host

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        self.host.ensure_serving()
        received: list[str] = []
        sent: list[str] = []
        flushed = False

        async def flush_once() -> None:
            nonlocal flushed
            if not flushed:
                flushed = True
                self.host.serving_stopped()
                await self._flush()

        async def app_receive() -> Message:
            message = await receive()
            received.append(message.get("type", ""))
            return message

        async def app_send(message: Message) -> None:
            kind = message.get("type", "")
            if kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await flush_once()
            sent.append(kind)
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except Exception:
            if sent:  # the app speaks lifespan and failed: that is the server's to report
                if "lifespan.shutdown" in received:
                    await flush_once()
                raise
        if any(kind in _DONE for kind in sent):
            return
        # The app does not speak lifespan (or stopped): speak it, so the server still says when it stops.
        if "lifespan.startup.complete" not in sent:
            if "lifespan.startup" not in received:
                await receive()
            await send({"type": "lifespan.startup.complete"})
        if "lifespan.shutdown" not in received:
            while (await receive()).get("type") != "lifespan.shutdown":
                pass
        await flush_once()
        await send({"type": "lifespan.shutdown.complete"})

    async def _flush(self) -> None:
        """Push the last numbers from a daemon thread, so neither the loop nor the process exit waits
        on a dead collector longer than the shutdown timeout."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def work() -> None:
            try:
                self.host.flush()
            except Exception:
                logger.exception("otel_llm_metrics: the final push failed")
            finally:
                try:
                    loop.call_soon_threadsafe(finished)
                except RuntimeError:  # the loop is gone: nobody waits any more
                    pass

        threading.Thread(target=work, name="otel-llm-metrics-flush", daemon=True).start()
        timeout = self.host.settings.shutdown_timeout_s + 1.0
        try:
            await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            logger.warning("otel_llm_metrics: the final push took over %.1fs; gave up waiting", timeout)
