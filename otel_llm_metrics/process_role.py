"""What this process is, decided in one place: whether its numbers are collected and pushed.

- ``PLAIN``: a script, a queue worker (Celery, RQ, arq), a WSGI app, a cron job, an evaluation run. It exports
  on the interval and at exit, exactly as under the SDK's own configurator, and serves the embedded endpoint
  from start-up.
- ``STARTING``: a server's command line (uvicorn, gunicorn, hypercorn, granian, ``fastapi run``) that has not
  yet said whether it serves itself or supervises workers. It collects nothing until it serves.
- ``SERVING``: serves requests: a server's worker, or a server that runs alone.
- ``MASTER``: supervises workers (gunicorn's arbiter, uvicorn's and hypercorn's supervisors, granian's main
  process). It never collects: a fork while a collection holds the SDK's locks would leave them held in the
  worker, whose every collection would then wait forever. Its workers speak for the server.
- ``HELPER``: multiprocessing's resource tracker or forkserver, which the zero-code start-up also runs in.

The servers' hooks (``server_loaders``) and the served requests move a process along; a forked child of a
master serves. Everything else asks ``exporting()``.
"""

from __future__ import annotations

import enum
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Role(enum.Enum):
    PLAIN = "plain"
    STARTING = "starting"
    SERVING = "serving"
    MASTER = "master"
    HELPER = "helper"


WORKERS_VARIABLE = "OTEL_LLM_METRICS_SERVER_WORKERS"  # set by a master for its workers: how many it starts
SERVER_COMMANDS = frozenset(("uvicorn", "gunicorn", "hypercorn", "granian", "fastapi", "daphne"))
_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "multiprocessing.semaphore_tracker")
_EXPORTING = frozenset((Role.PLAIN, Role.SERVING))


def role_of_command(argv: list[str], orig_argv: list[str] | None = None) -> Role:
    """The role a process starts with, from its command line."""
    if any(helper in arg for arg in (orig_argv or ()) for helper in _HELPERS):
        return Role.HELPER
    if argv and argv[0] == "-m" and orig_argv and "-m" in orig_argv[:-1]:  # python -m uvicorn, during start-up
        module = orig_argv[orig_argv.index("-m") + 1]
        return Role.STARTING if module.split(".")[0] in SERVER_COMMANDS else Role.PLAIN
    if not argv or not argv[0] or argv[0] == "-c":
        return Role.PLAIN
    script = Path(argv[0])
    command = script.parent.name if script.stem == "__main__" else script.stem
    return Role.STARTING if command in SERVER_COMMANDS else Role.PLAIN


class ProcessRole:
    """This process's role, and the collections it lets run (never one across a change to ``MASTER``)."""

    def __init__(self, role: Role, spawned: bool = False) -> None:
        self.role = role
        # A child multiprocessing spawned (uvicorn's and hypercorn's workers) learns its server only once its
        # start-up has run: its endpoint waits until it serves, to join its siblings' (one per server).
        self.spawned = spawned
        self._changed = threading.Condition(threading.Lock())
        self._collecting = 0
        self._on_master: list[Callable[[], None]] = []

    def exporting(self) -> bool:
        """Whether this process's numbers are collected and pushed now."""
        return self.role in _EXPORTING

    def serves_endpoint_from_start(self) -> bool:
        """A plain process serves the embedded endpoint from start-up, as the SDK's own Prometheus reader does."""
        return self.role is Role.PLAIN and not self.spawned

    def now_serving(self) -> None:
        """A request (or a lifespan start-up) reached this process: it serves."""
        if self.role in (Role.STARTING, Role.PLAIN):
            self.role = Role.SERVING

    def become_master(self, workers: int | None = None) -> None:
        """The server is about to start ``workers`` workers (they inherit the number: ``server_workers``):
        collections in progress finish, and none starts again."""
        if workers is not None:
            os.environ[WORKERS_VARIABLE] = str(workers)
        with self._changed:
            self.role = Role.MASTER
            while self._collecting:
                self._changed.wait()
            waiting, self._on_master = self._on_master, []
        for callback in waiting:
            callback()

    def when_master(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when this process becomes a master (e.g. hand the endpoint's port over)."""
        self._on_master.append(callback)

    @contextmanager
    def collection(self) -> Iterator[bool]:
        """Around one collection: whether it may run; a change to ``MASTER`` waits for it to end."""
        with self._changed:
            allowed = self.role in _EXPORTING
            if allowed:
                self._collecting += 1
        try:
            yield allowed
        finally:
            if allowed:
                with self._changed:
                    self._collecting -= 1
                    self._changed.notify_all()

    def after_fork_in_child(self) -> None:
        """A master's child serves; the lock is new (the parent's may have been held at the fork)."""
        self._changed = threading.Condition(threading.Lock())
        self._collecting = 0
        self._on_master = []
        if self.role is Role.MASTER:
            self.role = Role.SERVING


def server_workers() -> int | None:
    """How many workers this process's server master said it starts (None: no master said, or not a worker)."""
    value = os.environ.get(WORKERS_VARIABLE, "")
    return int(value) if value.isdigit() else None


def gate(collect: Callable[..., Any], role: ProcessRole) -> Callable[..., Any]:
    """A reader's collect callback that collects nothing (so exports nothing) while ``role`` does not export."""
    def gated(reader: Any, timeout_millis: float = 10_000) -> Any:
        with role.collection() as allowed:
            return collect(reader, timeout_millis=timeout_millis) if allowed else None

    return gated


ROLE = ProcessRole(role_of_command(sys.argv, getattr(sys, "orig_argv", None)), "--multiprocessing-fork" in sys.argv)
os.register_at_fork(after_in_child=lambda: ROLE.after_fork_in_child())
