"""The embedded Prometheus endpoint of one server, whatever its number of workers.

Every worker hands its snapshot to the server's directory once per interval and at every way out,
from a thread of its own: nothing is added to the request path. The worker that holds the
directory's lock serves the endpoint; the kernel releases the lock when it dies, even by SIGKILL,
and the next worker to try takes over on the same port. A scrape merges the serving worker's live
numbers (written to its own file first, so what was served never goes back) with the others' files.

The same lock says which worker pushes the server's merged view over OTLP (``otlp_push``): a worker that
pushes contends for it even when no port is served, and at its exit hands it to a sibling that is still
exiting, so the last push of a server carries every worker's last numbers.

A request that asks for ``application/json`` gets the same numbers in the schema of
``otel-llm-metrics snapshot --json`` (``otel-llm-metrics.snapshot/1``, docs/cli.md), built by the CLI's own
code from the text page, as that command builds it from a scrape.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ..bridge import MetricsBridge
from ..catalogue import observe
from ..config import Settings
from ..process_role import server_workers
from .directory import LOCK, ServerDirectory, default_base, started, worker_children
from .exposition import TEXT, content_type_for, render
from .merge import Source, merge, server_resource
from .page_server import serve
from .snapshot import MetricRows, Snapshot, rows_of

if TYPE_CHECKING:
    from ..registry import Registry

logger = logging.getLogger(__name__)
JSON = "application/json"


class Endpoint:
    def __init__(self, settings: Settings, collect: Callable[[], MetricsData | None], created_in_pid: int,
                 announce: Callable[[str], None], pushes: bool = False) -> None:
        """``pushes``: this worker may push the server's merged view over OTLP, so it contends for the lock
        even where it serves no port."""
        self._settings = settings
        self._collect = collect
        self._created_in_pid = created_in_pid
        self._announce = announce
        self._serves_port = "prometheus" in settings.metrics_exporters  # else: only the app's metrics path
        self._contends = self._serves_port or pushes
        self._pid = os.getpid()
        self._started = started(self._pid) or time.time()
        self._hand_over_lock = threading.Lock()
        self._aggregate_lock = threading.Lock()
        self._hold_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._complained = False
        self._exiting = False  # this worker's final push has begun: it takes the lock over no more
        self._several: bool | None = None  # latched once the server is seen with two workers at once
        self._next_count = 0.0
        self._count_every = 1.0
        self.holding = False  # this worker holds the directory's lock: it serves the port and pushes
        self.ready = False  # start() is over: the directory (or its absence) and the worker count are known
        self.directory: ServerDirectory | None = None
        self.server: Any = None
        self.port: int | None = None

    # -- start and take over ---------------------------------------------------------------------
    def start(self) -> None:
        base = Path(self._settings.workers_dir) if self._settings.workers_dir else default_base()
        try:
            self.directory = ServerDirectory.of_this_server(base, self._created_in_pid)
        except OSError as exc:
            logger.error("otel_llm_metrics: cannot use %s for this server's workers (%s); this worker serves its "
                         "own numbers only. Set OTEL_LLM_METRICS_WORKERS_DIR to a writable directory.", base, exc)
        if self.directory is None:
            self.ready = True
            if self._serves_port:
                self._serve(self._settings.prometheus_port)
            return
        self.hand_over()
        if self._contends:
            self.several_workers()
            self._take_over_if_free()
        self.ready = True
        self._thread = threading.Thread(target=self._run, name="otel-llm-metrics-workers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._settings.workers_interval):
            try:
                self.hand_over()
                if self._contends and not self._exiting:
                    self.several_workers()
                    if not self.holding or (self._serves_port and self.server is None):
                        self._take_over_if_free()
            except Exception:
                if not self._complained:  # once: a full disk must not fill the log as well
                    self._complained = True
                    logger.exception("otel_llm_metrics: could not hand this worker's numbers over")

    def _take_over_if_free(self) -> None:
        with self._hold_lock:
            if self._exiting or not self._acquire():
                return
            assert self.directory is not None
            if self._serves_port and self.server is None:
                self._serve(self.directory.recorded_port() or self._settings.prometheus_port)
                if self.port is not None:
                    self.directory.record_holder(self._pid, self.port)

    def _acquire(self) -> bool:
        """Take the directory's lock if free (call with ``_hold_lock``); True while this worker holds it."""
        if self.holding:
            return True
        assert self.directory is not None
        if self._lock_fd is None:
            self._lock_fd = os.open(self.directory.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.holding = True
        self.directory.remove_stale_servers()
        self.directory.record_pusher(self._pid, self._started, exiting=self._exiting)
        return True

    def several_workers(self) -> bool:
        """Whether this server runs several workers: latched the first time two of them live at once, checked
        at start and then with a back-off (a server of one worker never forks a sibling). Decides merged
        pushes (``otlp_push``); the endpoint itself merges whatever the directory holds."""
        if self._several or self.directory is None:
            return bool(self._several)
        if (server_workers() or 0) >= 2:  # what the master said it starts (process_role): exact, no counting
            self._several = True
            return True
        now = time.monotonic()
        if now >= self._next_count:
            self._several = worker_children(self.directory.master or os.getppid()) >= 2 or None
            self._next_count, self._count_every = now + self._count_every, min(self._count_every * 2, 60.0)
        return bool(self._several)

    # -- the last push of an exiting worker (otlp_push) ----------------------------------------------
    def hold_for_final(self, deadline: float) -> bool:
        """This worker is exiting: whether it should push the server's merged view now. After handing its last
        numbers over: the holder does; a sibling does when the lock is free, or when the holder is exiting too
        (it may have read the directory before this worker's last file): then it waits for the lock, until
        ``deadline`` (monotonic). Otherwise the live holder's next push carries this worker's numbers."""
        if self.directory is None:
            return False
        self.save()
        while True:
            with self._hold_lock:
                self._exiting = True
                if self._acquire():
                    self.directory.record_pusher(self._pid, self._started, exiting=True)
                    return True
            if not self.directory.pusher_exiting() or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def release_after_final(self) -> None:
        """Let the next exiting sibling push at once; a holder that serves the port keeps both until it exits
        (another worker would otherwise open the port elsewhere)."""
        with self._hold_lock:
            if self.server is None:
                self._close_lock()

    def _serve(self, port: int) -> None:
        host = self._settings.prometheus_host
        last_error: OSError | None = None
        for candidate in range(port, min(port + self._settings.prometheus_port_attempts, 65536)):
            try:
                self.server = serve(host, candidate, self.exposition)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last_error = exc
                continue
            self.port = candidate
            taken = f" (port {port} is taken by another program)" if candidate != port else ""
            whole = ", for all workers of this server" if self.directory is not None else ""
            self._announce(f"otel_llm_metrics: metrics on http://{_url_host(host)}:{candidate}/metrics "
                           f"(pid {self._pid}{whole}){taken}")
            return
        logger.error("otel_llm_metrics: ports %s-%s are all taken, no Prometheus endpoint in pid %s (%s). "
                     "Set OTEL_EXPORTER_PROMETHEUS_PORT or use OTLP.", port,
                     port + self._settings.prometheus_port_attempts - 1, self._pid, last_error)

    # -- hand over and merge ------------------------------------------------------------------------
    def hand_over(self) -> Snapshot:
        """This worker's numbers now, written to its file (when it has siblings)."""
        with self._hand_over_lock:
            resource, rows = rows_of(self._collect())
            snapshot = Snapshot(self._pid, self._started, time.time(), resource, rows)
            if self.directory is not None:
                self.directory.write(snapshot)
            return snapshot

    def aggregate(self) -> tuple[list[MetricRows], dict[str, Any]]:
        """The whole server's numbers: this worker's live ones and every other worker's last."""
        with self._aggregate_lock:
            own = self.hand_over()
            sources = [Source(own, alive=True, serving=True)]
            if self.directory is None:
                return merge(sources), own.resource
            others = self.directory.read_others(self.directory.snapshot_path(own.pid, own.started))
            if self.holding:
                self.directory.retire(others)
            sources += [Source(snapshot, alive=True) for snapshot in others.live]
            sources += [Source(snapshot, alive=False) for _, snapshot in others.dead]
            if others.retired is not None:
                sources.append(Source(others.retired, alive=False))
            return merge(sources), server_resource(own.resource)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The merged numbers as the scraper asked (OpenMetrics carries exemplars; ``application/json`` the
        snapshot schema): body, content type."""
        try:
            if wants_json(accept):
                return json.dumps(self.snapshot()).encode(), JSON
            content_type = content_type_for(accept)
            metrics, resource = self.aggregate()
            return render(metrics, resource, content_type), content_type
        except Exception:
            logger.exception("otel_llm_metrics could not build the metrics page")
            raise

    def snapshot(self) -> dict[str, Any]:
        """The merged numbers in the schema ``otel-llm-metrics.snapshot/1``: what a JSON request gets."""
        metrics, resource = self.aggregate()
        return snapshot_of(render(metrics, resource, TEXT))

    # -- stop --------------------------------------------------------------------------------------
    def save(self) -> None:
        """Hand this worker's numbers over now, where it has siblings to serve them; never raises."""
        if self.directory is None:
            return
        try:
            self.hand_over()
        except Exception:
            logger.exception("otel_llm_metrics: could not hand this worker's last numbers over")

    def stop(self) -> None:
        """Hand the last numbers over and let another worker serve."""
        self._stopping.set()
        self.save()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self._close_lock()

    def after_fork_in_child(self) -> None:
        """Close the child's copies of the parent's socket and lock (the parent keeps both)."""
        server, self.server = self.server, None
        if server is not None:
            try:
                server.server_close()
            except Exception:
                pass
        self._close_lock()

    def _close_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        self.holding = False
        if fd is not None:
            os.close(fd)


def wants_json(accept: str | None) -> bool:
    """Whether the request asks for JSON: ``application/json`` listed, and OpenMetrics not (a scraper keeps
    its page). Anything else (no Accept, ``*/*``, a browser's ``text/html``) gets the text page as before."""
    wanted = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return JSON in wanted and "application/openmetrics-text" not in wanted


def snapshot_of(page: bytes) -> dict[str, Any]:
    """A text page in the schema ``otel-llm-metrics.snapshot/1``: the one builder, the CLI's (no cli extra)."""
    from ..cli.snapshot import snapshot  # imported when asked: the scrape path never loads the CLI

    return snapshot(page.decode("utf-8"))


def page_of(data: MetricsData | None) -> bytes:
    """One process's collection as the endpoint renders it (the text format), without other workers."""
    resource, rows = rows_of(data)
    own = Snapshot(os.getpid(), 0.0, time.time(), resource, rows)
    return render(merge([Source(own, alive=True, serving=True)]), resource, TEXT)


def collect_once(registry: Registry, resource: Callable[[], Resource], scope: InstrumentationScope
                 ) -> MetricsData | None:
    """Every instrument of ``registry`` (its histograms and observables), collected once, cumulative, through
    a provider and reader of its own: for a process with no in-memory reader (OTLP only). The push readers
    are not touched, so their deltas and export schedule stay as they were."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=resource(), shutdown_on_exit=False)
    try:
        MetricsBridge(registry.histogram_groups, resource, scope).attach(reader)
        meter = provider.get_meter(scope.name, scope.version)
        for area in registry.areas:
            for spec, callback in area.observers().items():
                observe(meter, spec, callback)
        return reader.get_metrics_data()
    finally:
        provider.shutdown()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
