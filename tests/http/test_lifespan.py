"""The lifespan relay: the last numbers are pushed when the server says it stops, for any app."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import SimpleNamespace

from starlette.applications import Starlette

from otel_llm_metrics.http.lifespan import LifespanRelay


class Host:
    """The part of a Telemetry the relay talks to, recording what happened and in which order."""

    def __init__(self, flush=None, timeout: float = 5.0) -> None:
        self.settings = SimpleNamespace(shutdown_timeout_s=timeout)
        self.events: list[str] = []
        self._flush = flush

    def ensure_serving(self) -> None:
        self.events.append("serving")

    def serving_stopped(self) -> None:
        self.events.append("stopped")

    def flush(self) -> None:
        if self._flush:
            self._flush()
        self.events.append("flushed")


def _server(relay: LifespanRelay, host: Host) -> list[str]:
    """Start and stop like uvicorn: startup, wait for complete, then shutdown, wait for complete."""
    incoming: asyncio.Queue = asyncio.Queue()
    sent: list[str] = []

    async def receive():
        return await incoming.get()

    async def send(message):
        sent.append(message["type"])
        host.events.append(message["type"])

    async def run():
        task = asyncio.ensure_future(relay({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
        await incoming.put({"type": "lifespan.startup"})
        while "lifespan.startup.complete" not in sent and not task.done():
            await asyncio.sleep(0)
        host.events.append("serving requests")
        await incoming.put({"type": "lifespan.shutdown"})
        await task

    asyncio.run(run())
    return sent


def test_an_app_that_speaks_lifespan_is_flushed_after_its_own_shutdown_and_before_the_server_hears_of_it():
    host = Host()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        host.events.append("app shutdown handler")

    app = Starlette(lifespan=lifespan)
    assert _server(LifespanRelay(app, host), host) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert host.events == ["serving", "lifespan.startup.complete", "serving requests", "app shutdown handler",
                           "stopped", "flushed", "lifespan.shutdown.complete"]


def test_a_bare_app_that_raises_on_lifespan_gets_it_spoken_for_it():
    async def bare(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")

    host = Host()
    assert _server(LifespanRelay(bare, host), host) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert host.events.index("flushed") < host.events.index("lifespan.shutdown.complete")


def test_an_app_that_fails_at_start_up_is_left_to_the_server():
    async def failing(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    host = Host()
    relay = LifespanRelay(failing, host)

    async def run():
        messages = iter([{"type": "lifespan.startup"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message["type"])

        await relay({"type": "lifespan"}, receive, send)
        return sent

    assert asyncio.run(run()) == ["lifespan.startup.failed"]
    assert "flushed" not in host.events


def test_a_flush_that_hangs_never_holds_the_shutdown_longer_than_the_timeout():
    release = threading.Event()
    host = Host(flush=lambda: release.wait(30), timeout=0.05)
    try:
        sent = _server(LifespanRelay(Starlette(), host), host)
        assert sent[-1] == "lifespan.shutdown.complete" and "flushed" not in host.events, "gave up waiting"
    finally:
        release.set()
