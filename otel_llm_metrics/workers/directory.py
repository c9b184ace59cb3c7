"""The files of one server's workers: one snapshot per worker, the dead workers' totals, the lock
that says which worker serves the endpoint. One directory per server, so two servers on one host
never mix; named after the server's master process and its start time, so a recycled pid never
reads an old server's files."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .merge import Source, merge
from .snapshot import Snapshot

logger = logging.getLogger(__name__)
RETIRED = "retired.json"  # the summed totals of workers that died, and which files they came from
HOLDER = "holder.json"  # the port the endpoint is served on, kept for the worker that takes over
PUSHER = "pusher.json"  # which worker holds the lock and whether it is exiting (its final push has begun)
PUSHED = "pushed-{}.json"  # the merged totals last pushed by an OTLP reader with delta temporality
LOCK = "holder.lock"
_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "multiprocessing.semaphore_tracker")
_GROUP_NAME = re.compile(r"^(\d+)-(\d+)$")


def default_base() -> Path:
    return Path(tempfile.gettempdir()) / f"otel-llm-metrics-{os.getuid()}"


def started(pid: int) -> float | None:
    """When process ``pid`` started, or None if it is gone (a zombie counts as gone)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.Error:
        return None


def alive(pid: int, start_time: float) -> bool:
    """``pid`` still runs and is the same process (not a later one that reuses the number)."""
    now = started(pid)
    return now is not None and abs(now - start_time) < 0.05


def server_master(created_in_pid: int) -> int | None:
    """The process whose workers share one endpoint: the master of a pre-fork or spawning server;
    None for a process that serves alone.

    A worker forked after our set-up ran in its parent (gunicorn with zero code or preload), a child
    that multiprocessing spawned (uvicorn --workers, hypercorn --workers), and a gunicorn worker that
    set up after the fork all belong to their parent. Anything else serves alone.
    """
    pid = os.getpid()
    if pid != created_in_pid or multiprocessing.parent_process() is not None or "gunicorn.arbiter" in sys.modules:
        return os.getppid()
    return None


def worker_children(master: int) -> int:
    """How many workers ``master`` runs now: its live children, less multiprocessing's helper processes."""
    try:
        children = psutil.Process(master).children()
    except psutil.Error:
        return 0
    count = 0
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if not any(helper in command for helper in _HELPERS):
            count += 1
    return count


@dataclass
class OtherWorkers:
    """What the directory holds besides the reading process's own snapshot."""

    live: list[Snapshot] = field(default_factory=list)
    dead: list[tuple[Path, Snapshot]] = field(default_factory=list)
    retired: Snapshot | None = None
    folded: list[str] = field(default_factory=list)


class ServerDirectory:
    def __init__(self, path: Path, master: int | None = None, master_started: float = 0.0) -> None:
        self.path = path
        self.master = master  # the server's master process, and when it started: the server's identity
        self.master_started = master_started

    @classmethod
    def of_this_server(cls, base: Path, created_in_pid: int) -> ServerDirectory | None:
        """None when this process serves alone: it has nobody to share with, and nobody takes over."""
        master = server_master(created_in_pid)
        if master is None:
            return None
        master_started = started(master) or 0.0
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        if base.stat().st_uid != os.getuid():
            raise PermissionError(f"{base} belongs to another user; set OTEL_LLM_METRICS_WORKERS_DIR")
        path = base / f"{master}-{round(master_started * 100)}"
        path.mkdir(mode=0o700, exist_ok=True)
        return cls(path, master, master_started)

    def snapshot_path(self, pid: int, start_time: float) -> Path:
        return self.path / f"worker-{pid}-{round(start_time * 100)}.json"

    def write(self, snapshot: Snapshot) -> None:
        """Atomically: a reader sees the previous snapshot or this one, never half of one."""
        _write_json(self.snapshot_path(snapshot.pid, snapshot.started), snapshot.to_json())

    def read_others(self, own: Path) -> OtherWorkers:
        others = OtherWorkers()
        retired = _read_json(self.path / RETIRED)
        if retired is not None:
            others.retired = Snapshot.from_json(retired["snapshot"])
            others.folded = retired["folded"]
        for path in self.path.glob("worker-*.json"):
            if path == own or path.name in others.folded:
                continue
            data = _read_json(path)
            if data is None:
                continue
            snapshot = Snapshot.from_json(data)
            if alive(snapshot.pid, snapshot.started):
                others.live.append(snapshot)
            else:
                others.dead.append((path, snapshot))
        return others

    def retire(self, others: OtherWorkers) -> None:
        """Fold the dead workers' totals into one file, then remove theirs (the holder only).

        Crash-safe: the totals file names what it folded before those files go, and readers skip them.
        """
        if not others.dead:
            return
        sources = [Source(s, alive=False) for s in ([others.retired] if others.retired else [])]
        sources += [Source(snapshot, alive=False) for _, snapshot in others.dead]
        retired = Snapshot(0, 0.0, time.time(), {}, merge(sources))
        still_there = [name for name in others.folded if (self.path / name).exists()]
        _write_json(self.path / RETIRED, {"snapshot": retired.to_json(),
                                          "folded": still_there + [path.name for path, _ in others.dead]})
        for path, _ in others.dead:
            path.unlink(missing_ok=True)
        others.retired, others.dead = retired, []

    def recorded_port(self) -> int | None:
        data = _read_json(self.path / HOLDER)
        return data.get("port") if data else None

    def record_holder(self, pid: int, port: int) -> None:
        _write_json(self.path / HOLDER, {"pid": pid, "port": port})

    def record_pusher(self, pid: int, start_time: float, *, exiting: bool) -> None:
        _write_json(self.path / PUSHER, {"pid": pid, "started": start_time, "exiting": exiting})

    def pusher_exiting(self) -> bool:
        """The lock's holder has begun its final push and still lives: a sibling exiting too waits to push after it."""
        data = _read_json(self.path / PUSHER)
        return bool(data and data.get("exiting") and alive(data["pid"], data["started"]))

    def read_pushed(self, slot: int) -> dict | None:
        """What the ``slot``-th delta reader pushed last, whichever worker pushed it."""
        return _read_json(self.path / PUSHED.format(slot))

    def write_pushed(self, slot: int, data: dict) -> None:
        _write_json(self.path / PUSHED.format(slot), data)

    def remove_stale_servers(self) -> None:
        """Directories of servers whose master has gone: nobody will read them again."""
        for path in self.path.parent.iterdir():
            match = _GROUP_NAME.match(path.name)
            if match and path != self.path and not alive(int(match[1]), int(match[2]) / 100):
                shutil.rmtree(path, ignore_errors=True)


def _write_json(path: Path, data: object) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(temporary, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("otel_llm_metrics: cannot read %s (%s); leaving it out", path, exc)
        return None
