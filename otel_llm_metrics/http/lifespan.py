"""The ASGI lifespan scope, passed through untouched: the last numbers go out as the app finishes its shutdown.

Whatever the app receives, sends or raises reaches it or the server unchanged, exactly as without the
middleware: a start-up that fails still fails, an app that does not speak lifespan still tells the
server so by raising. The relay only adds a wait before the app's ``lifespan.shutdown.complete`` (or
``.failed``) reaches the server, in which the final numbers are pushed within the exit bound: uvicorn
re-raises SIGTERM once its shutdown is done, killing the process before ``atexit``.

Apps without lifespan are pushed by the server's own shutdown (``server_hooks``) or at ``atexit``:
docs/shipping.md says which server takes which path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Message = dict[str, Any]
_SHUTDOWN_REPLIES = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


class Stopping(Protocol):
    """What the relay needs of the running instrumentation (``runtime.Telemetry``)."""

    def ensure_serving(self) -> None: ...

    async def push_before_exit(self) -> None: ...


class LifespanRelay:
    def __init__(self, app: Callable[..., Awaitable[None]], host: Stopping) -> None:
        self.app = app
        self.host = host

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        self.host.ensure_serving()
        shutting_down = pushed = False

        async def app_receive() -> Message:
            nonlocal shutting_down
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                shutting_down = True
            return message

        async def app_send(message: Message) -> None:
            nonlocal pushed
            if message.get("type") in _SHUTDOWN_REPLIES and not pushed:
                pushed = True
                await self.host.push_before_exit()
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except Exception:
            if shutting_down and not pushed:  # the app's shutdown raised: push, then let it reach the server
                pushed = True
                await self.host.push_before_exit()
            raise
