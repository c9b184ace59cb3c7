"""The lifespan relay: the app's lifespan reaches the server exactly as bare, and the last numbers are pushed
just before the app's shutdown reply; under asyncio and trio (the ``run`` fixture)."""

from __future__ import annotations

import contextlib
import threading

import anyio
import anyio.lowlevel
from starlette.applications import Starlette

from otel_llm_metrics.http.lifespan import LifespanRelay


class Host:
    """The part of a Telemetry the relay talks to, recording what happened and in which order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def ensure_serving(self) -> None:
        self.events.append("serving")

    async def push_before_exit(self) -> None:
        self.events.append("pushed")


async def serve(app, events: list[str]) -> tuple[list[dict], BaseException | None]:
    """Start up and shut down as uvicorn's lifespan does: the messages the server got, and what the app raised."""
    inbox = [{"type": "lifespan.startup"}]
    sent: list[dict] = []
    raised: BaseException | None = None
    finished = False

    async def receive():
        while not inbox:
            await anyio.lowlevel.checkpoint()
        return inbox.pop(0)

    async def send(message):
        sent.append(message)
        events.append(message["type"])

    async def main():
        nonlocal raised, finished
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
        except Exception as exc:  # what uvicorn catches and logs
            raised = exc
        finally:
            finished = True

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(main)
        while not sent and not finished:
            await anyio.lowlevel.checkpoint()
        if sent and sent[-1]["type"] == "lifespan.startup.complete":
            events.append("serving requests")
            inbox.append({"type": "lifespan.shutdown"})
            while len(sent) < 2 and not finished:
                await anyio.lowlevel.checkpoint()
        tasks.cancel_scope.cancel()  # like uvicorn: the server goes on, whether or not the app returned
    return sent, raised


def bare_and_wrapped(run, app) -> tuple[tuple, tuple, Host]:
    """What the server saw of ``app`` bare and of ``app`` behind the relay (types and messages compared)."""
    bare_sent, bare_raised = run(serve(app, []))
    host = Host()
    sent, raised = run(serve(LifespanRelay(app, host), host.events))
    describe = lambda raised: (type(raised), str(raised)) if raised else None  # noqa: E731
    return (bare_sent, describe(bare_raised)), (sent, describe(raised)), host


def test_an_app_that_speaks_lifespan_is_pushed_after_its_own_shutdown_and_before_the_server_hears_of_it(run):
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        events.append("app shutdown handler")

    bare, wrapped, host = bare_and_wrapped(run, Starlette(lifespan=lifespan))
    assert wrapped == bare
    assert [m["type"] for m in wrapped[0]] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert host.events == ["serving", "lifespan.startup.complete", "serving requests", "pushed",
                           "lifespan.shutdown.complete"]


def test_a_bare_app_that_raises_on_lifespan_tells_the_server_so_itself(run):
    async def http_only(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")

    bare, wrapped, host = bare_and_wrapped(run, http_only)
    assert wrapped == bare == ([], (RuntimeError, "http only")), "the server decides: lifespan unsupported"
    assert "pushed" not in host.events, "the server's own shutdown or atexit pushes for such an app"


def test_a_start_up_that_raises_before_saying_anything_still_fails(run):
    async def database_down(scope, receive, send):
        await receive()
        raise ConnectionRefusedError("database is down")

    bare, wrapped, host = bare_and_wrapped(run, database_down)
    assert wrapped == bare == ([], (ConnectionRefusedError, "database is down"))
    assert "pushed" not in host.events


def test_a_starlette_start_up_that_fails_reaches_the_server_unchanged(run):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        raise ConnectionRefusedError("database is down")
        yield  # pragma: no cover

    bare, wrapped, host = bare_and_wrapped(run, Starlette(lifespan=lifespan))
    assert [m["type"] for m in wrapped[0]] == [m["type"] for m in bare[0]] == ["lifespan.startup.failed"]
    assert wrapped[1] == bare[1] == (ConnectionRefusedError, "database is down")
    assert "pushed" not in host.events


def test_an_app_that_returns_after_start_up_is_not_spoken_for(run):
    async def returns(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})

    bare, wrapped, _ = bare_and_wrapped(run, returns)
    assert wrapped == bare
    assert [m["type"] for m in wrapped[0]] == ["lifespan.startup.complete"]


def test_a_shutdown_that_raises_is_pushed_and_still_raises(run):
    async def fails_at_shutdown(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise OSError("could not close the pool")

    bare, wrapped, host = bare_and_wrapped(run, fails_at_shutdown)
    assert wrapped == bare and wrapped[1] == (OSError, "could not close the pool")
    assert host.events[-1] == "pushed"


def test_a_push_that_hangs_never_holds_the_shutdown_past_the_exit_bound(run, make_telemetry, monkeypatch):
    telemetry = make_telemetry(shutdown_timeout_s=0.05)
    release = threading.Event()
    monkeypatch.setattr(telemetry, "flush", lambda deadline=None: release.wait(30))
    try:
        sent, raised = run(serve(LifespanRelay(Starlette(), telemetry), []))
        assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert raised is None and not release.is_set()
    finally:
        release.set()


def test_every_way_out_shares_one_deadline_until_a_push_gets_through(run, make_telemetry, monkeypatch):
    telemetry = make_telemetry(shutdown_timeout_s=0.05)
    release = threading.Event()
    monkeypatch.setattr(telemetry, "flush", lambda deadline=None: release.wait(30))
    try:
        run(telemetry.push_before_exit())
        first = telemetry.exit_deadline()
        run(telemetry.push_before_exit())  # the bound is used up: returns at once, same deadline
        assert telemetry.exit_deadline() == first
    finally:
        release.set()
    monkeypatch.undo()
    fresh = make_telemetry(shutdown_timeout_s=5)
    run(fresh.push_before_exit())
    assert fresh._exit_deadline is None, "a push that got through leaves the next way out its own bound"


def test_loop_lag_stays_off_under_trio_with_one_info_line(make_telemetry, caplog):
    telemetry = make_telemetry(loop_lag_interval=0.01)

    async def first_request():
        telemetry.ensure_serving()

    with caplog.at_level("INFO", logger="otel_llm_metrics"):
        anyio.run(first_request, backend="trio")
    said = [r.getMessage() for r in caplog.records if "event_loop.lag" in r.getMessage()]
    assert len(said) == 1 and "trio" in said[0]
    assert not telemetry.loop_monitor.running


def test_the_uvicorn_shutdown_hook_pushes_once_for_an_app_without_lifespan_and_never_twice(run):
    from otel_llm_metrics import server_hooks

    class Telemetry:
        final_pushes = 0

        async def push_before_exit(self) -> None:
            self.final_pushes += 1

    telemetry = Telemetry()

    class Server:  # uvicorn's Server.shutdown runs the app's lifespan shutdown, where the relay pushes
        def __init__(self, app_speaks_lifespan: bool) -> None:
            self.app_speaks_lifespan = app_speaks_lifespan

        async def shutdown(self, sockets=None) -> None:
            if self.app_speaks_lifespan:
                await telemetry.push_before_exit()

    server_hooks._PUSHING.add(telemetry)
    server_hooks._extend_uvicorn(Server)
    server_hooks._extend_uvicorn(Server)  # installing twice wraps once
    run(Server(app_speaks_lifespan=False).shutdown())
    assert telemetry.final_pushes == 1, "the hook pushed for an app without lifespan"
    run(Server(app_speaks_lifespan=True).shutdown())
    assert telemetry.final_pushes == 2, "the relay pushed; the hook did not push again"
