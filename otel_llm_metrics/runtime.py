"""The running instrumentation of one process: what ``setup()`` returns.

It owns the meter (and tracer) provider, attaches the bridge to every reader, starts the
embedded Prometheus endpoint lazily in the process that serves requests (one endpoint for all the
workers of a server: ``workers``), rebuilds the resource after a fork, and shuts down within a bound.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import weakref
from dataclasses import replace
from time import monotonic
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import catalogue, log_format
from .bridge import MetricsBridge
from .client import instrumentors
from .client.call import flush_pending
from .config import ConfigError, Settings, load_settings
from .console import announce
from .frameworks import OVER_HTTPX, SPANS, duplicate_dropping_views, quiet_native_telemetry
from .http.blocking import within
from .http.middleware import MetricsMiddleware
from .process_role import ROLE, gate
from .providers import (
    add_span_metrics,
    instance_id_configured,
    make_push_readers,
    make_resource,
    make_tracer_provider,
    process_identity,
    renew_identity,
)
from .registry import DEFAULT_REGISTRY, Registry
from .resources.gpu import register_gpu
from .resources.loop_lag import LoopLagMonitor
from .resources.process import register_process, register_system
from .server_hooks import push_when_servers_stop
from .workers.endpoint import Endpoint
from .workers.otlp_push import merged_push

logger = logging.getLogger(__name__)
__version__ = "0.1.0"

_current: Telemetry | None = None
_current_lock = threading.Lock()


class Telemetry:
    """Providers, readers and the registry of one process; ``shutdown()`` flushes within a bound."""

    def __init__(self, settings: Settings, registry: Registry | None = None,
                 extra_readers: list[MetricReader] | None = None, *,
                 theirs: tuple[MeterProvider | None, TracerProvider | None] = (None, None),
                 adopted: bool = False) -> None:
        """``theirs``: SDK providers that already exist in this process (another configurator's, a vendor
        distro's, the app's own): ours attach to them instead of building a second pipeline. ``adopted``: the
        SDK's configuration built them for us (our configurator), so our defaults, identity and lifecycle apply."""
        self.settings = settings
        self.registry = registry or DEFAULT_REGISTRY
        self.registry.configure(settings.max_series, settings.max_model_names)
        self.registry.gen_ai.configure_cost(settings.cost, settings.prices_file, settings.max_tenants)
        self.registry.mcp.apply(settings)
        self._created_in_pid = self._resource_pid = os.getpid()
        their_meters, their_tracers = theirs
        self._resource = their_meters._sdk_config.resource if their_meters is not None else make_resource(settings)
        # A forked worker gets an instance id of its own, unless the user or someone else's pipeline set it.
        self._own_instance_id = (their_meters is None or adopted) and not instance_id_configured()
        self.endpoint: Endpoint | None = None
        self.serving = False  # reset in a forked child; a flag, since getpid() is a syscall per request
        self._lock = threading.Lock()
        self._shut_down = False
        self._exit_deadline: float | None = None  # monotonic; set by the first way out, shared by the others
        self.final_pushes = 0  # attempts so far: a server hook skips its push when the app's lifespan made one

        # attached: the pipeline, its resource and its lifecycle are someone else's
        self.attached = their_meters is not None and not adopted
        readers = list(extra_readers or [])
        self._endpoint_reader: InMemoryMetricReader | None = None
        if wants_endpoint(settings, attached=self.attached):
            # Cumulative numbers, read at each hand-over and scrape (workers.endpoint renders them).
            self._endpoint_reader = InMemoryMetricReader()
            readers.append(self._endpoint_reader)
        if their_meters is not None:
            self.meter_provider = their_meters
            for reader in readers:
                their_meters.add_metric_reader(reader)
            readers = [*getattr(their_meters, "_metric_readers", ()), *readers]
        else:
            readers.extend(make_push_readers(settings))
            self.meter_provider = MeterProvider(
                metric_readers=readers, resource=self._resource, shutdown_on_exit=False,
                views=duplicate_dropping_views(measuring(settings),
                                               latest_experimental=self.registry.gen_ai.latest_experimental))
        # OTEL_METRICS_EXEMPLAR_FILTER, as the provider (ours or theirs) read it: always_off means none of ours either.
        exemplar_filter = getattr(getattr(self.meter_provider, "_sdk_config", None), "exemplar_filter", None)
        self.exemplars = not isinstance(exemplar_filter, AlwaysOffExemplarFilter)
        bridge = MetricsBridge(self.registry.histogram_groups, self.resource,
                               InstrumentationScope(catalogue.SCOPE_NAME, __version__),
                               owned_names(settings, self.registry.gen_ai.latest_experimental), measuring(settings))
        # Over OTLP, a server's workers push one merged stream (workers.otlp_push); None where that cannot apply.
        self.merged = merged_push(settings, attached=self.attached, bridge=bridge, endpoint=lambda: self.endpoint)
        for reader in readers:
            bridge.attach(reader)
            if self.merged is not None:
                reader._collect = self.merged.wrap(  # type: ignore[attr-defined]
                    reader, reader._collect, self._created_in_pid)  # type: ignore[attr-defined]
            if not self.attached:  # ours collect only while the process exports (process_role: never in a master)
                reader._collect = gate(reader._collect, ROLE)  # type: ignore[attr-defined]
        meter = self.meter_provider.get_meter(catalogue.SCOPE_NAME, __version__)
        self.registry.register_observables(meter)
        self._register_resources(meter)
        self.loop_monitor = LoopLagMonitor(self.registry.loop_lag, settings.loop_lag_interval)
        if adopted and not settings.tracing:
            self.tracer_provider = None  # the SDK's configuration makes one whatever; ours make spans only when sent
        else:
            self.tracer_provider = their_tracers or make_tracer_provider(settings, self._resource)
        if self.tracer_provider is not None:
            add_span_metrics(self.tracer_provider, self.registry)
        adopted_too = (their_tracers, _sdk_logger_provider()) if adopted else ()
        owned = [self.meter_provider, self.tracer_provider, *adopted_too]
        self._owned_providers = [p for p in dict.fromkeys(owned) if p is not None and (adopted or p not in theirs)]
        for provider in self._owned_providers:
            atexit.unregister(provider.shutdown)  # the SDK's own, unbounded: ours keeps the exit bound
        _TELEMETRIES.add(self)

    def _register_resources(self, meter: Any) -> None:
        groups = set(self.settings.resources)
        if "process" in groups:
            register_process(meter)
        if "system" in groups:
            register_system(meter)
        if "gpu" in groups:
            register_gpu(meter)

    # -- process identity -----------------------------------------------------------------------
    def resource(self) -> Resource:
        """This process's resource. A forked worker gets its own service.instance.id and pid on every provider of
        ours (metrics, spans and logs alike) at its first request or collection: not in the fork hook, where the
        SDK has yet to renew its locks. Someone else's pipeline and a configured id are left as they are."""
        if self._own_instance_id and os.getpid() != self._resource_pid:
            self._resource_pid = os.getpid()
            identity = Resource(process_identity())
            renew_identity(self._owned_providers, identity)
            self._resource = self._resource.merge(identity)
        if hasattr(self.meter_provider, "_update_resource"):  # the SDK keeps the provider's resource current
            return self.meter_provider._sdk_config.resource
        return self._resource

    @staticmethod
    def exporting() -> bool:
        """Whether this process's numbers are collected and pushed now (``process_role``)."""
        return ROLE.exporting()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The endpoint's page for this server (every worker's numbers) and its content type."""
        if self.endpoint is None:
            raise RuntimeError("no Prometheus endpoint: it starts with the first request, when "
                               "OTEL_METRICS_EXPORTER includes prometheus or an app metrics path is set")
        return self.endpoint.exposition(accept)

    def snapshot(self) -> dict:
        """The numbers since start in the schema of ``otel-llm-metrics snapshot --json``
        (``otel-llm-metrics.snapshot/1``, docs/cli.md), as a dict: every worker's where this process runs
        the endpoint (what its JSON page says), else this process's, read once in memory (OTLP only)."""
        from .workers.endpoint import collect_once, page_of, snapshot_of

        if self.endpoint is not None:
            return self.endpoint.snapshot()
        scope = InstrumentationScope(catalogue.SCOPE_NAME, __version__)
        return snapshot_of(page_of(collect_once(self.registry, self.resource, scope)))

    @property
    def prometheus_port(self) -> int | None:
        """Where this process serves the embedded endpoint; None where another worker does."""
        return self.endpoint.port if self.endpoint is not None else None

    def _after_fork_in_child(self) -> None:
        """Cheap resets only: runs inside the fork, where taking locks or importing can deadlock."""
        endpoint, self.endpoint = self.endpoint, None
        self.serving = False
        self._exit_deadline = None
        self.loop_monitor = LoopLagMonitor(self.registry.loop_lag, self.settings.loop_lag_interval)
        self._lock = threading.Lock()
        if endpoint is not None:
            endpoint.after_fork_in_child()

    # -- serving --------------------------------------------------------------------------------
    def ensure_serving(self) -> None:
        """This process serves: its embedded Prometheus endpoint (once) and loop monitor start; never raises."""
        if self.serving:
            return
        with self._lock:
            if self.serving:
                return
            self.serving = True
            ROLE.now_serving()
            self.resource()  # a forked worker's own identity, before its first span
            self._start_loop_monitor()
            self._start_endpoint()

    def start_endpoint_now(self) -> None:
        """A plain process (a script, a queue worker) serves its endpoint from start-up; a master hands it over."""
        with self._lock:
            self._start_endpoint()
        ROLE.when_master(self._stop_endpoint)

    def _start_endpoint(self) -> None:
        if self._endpoint_reader is None and self.merged is not None and self.merged.active:
            self._endpoint_reader = self.merged.hand_over_reader(self.meter_provider, self._created_in_pid)
        if self._endpoint_reader is None or self.endpoint is not None:
            return
        try:
            self.endpoint = Endpoint(self.settings, self._endpoint_reader.get_metrics_data,
                                     self._created_in_pid, announce,
                                     pushes=self.merged is not None and self.merged.active)
            self.endpoint.start()
        except Exception:
            logger.exception("otel_llm_metrics could not start its Prometheus endpoint")

    def _stop_endpoint(self) -> None:
        """The process became a server's master: its workers serve the endpoint (on the same port)."""
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.stop()

    def _start_loop_monitor(self) -> None:
        """Measure the lag of the loop serving requests (called from inside it); asyncio and uvloop only."""
        if not self.settings.loop_lag_interval:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no asyncio loop: another async library, or not called from a loop at all
            library = _running_async_library()
            if library is not None:
                logger.info("otel_llm_metrics: asyncio.event_loop.lag stays off: it measures asyncio's loop, "
                            "and this app runs on %s", library)
            return
        self.loop_monitor.start(loop)

    # -- the way out ----------------------------------------------------------------------------
    def exit_deadline(self) -> float:
        """When the exit must be over (``shutdown_timeout_s`` after the first way out began).

        Every way out (lifespan shutdown, the server's own shutdown, atexit) waits only until this one
        moment, so with a dead collector the whole exit takes the bound once, not once per path.
        """
        with self._lock:
            if self._exit_deadline is None:
                self._exit_deadline = monotonic() + self.settings.shutdown_timeout_s
            return self._exit_deadline

    async def push_before_exit(self) -> None:
        """The server is stopping: push the last numbers, from any async library's loop, within the bound.

        The push runs on a daemon thread; the loop waits for it until the exit deadline and no longer.
        Once a push gets through, a later way out gets a bound of its own (an app may start again).
        """
        self.final_pushes += 1
        self.loop_monitor.stop()
        deadline = self.exit_deadline()
        if deadline <= monotonic():  # an earlier way out has used the bound up
            return
        if await within(lambda: self.flush(deadline), deadline - monotonic(), "final-push"):
            self._exit_deadline = None
        else:
            logger.warning("otel_llm_metrics: the final push did not finish within %.1fs; gave up waiting",
                           self.settings.shutdown_timeout_s)

    def flush(self, deadline: float | None = None) -> None:
        """Push everything now, by ``deadline`` (monotonic; default ``shutdown_timeout_s`` from now)."""
        flush_pending()  # upstream calls still waiting to learn whether their SDK retries them
        remaining = self.settings.shutdown_timeout_s if deadline is None else max(0.0, deadline - monotonic())
        if self.merged is not None:  # every worker's last numbers in the server's last merged push
            self.merged.final(monotonic() + remaining)
        self._each_provider(lambda provider: provider.force_flush(int(remaining * 1000)), "flushing")
        if self.endpoint is not None:
            self.endpoint.save()  # the last numbers in this worker's file, for the others to serve

    def _each_provider(self, action: Any, doing: str) -> None:
        """``action`` on the meter and tracer providers and the process's SDK logger provider (whoever set it
        up: records made just before a SIGTERM leave with the last numbers); an error in one never stops
        the others."""
        for provider in (self.meter_provider, self.tracer_provider, _sdk_logger_provider()):
            if provider is None:
                continue
            try:
                action(provider)
            except Exception:
                logger.exception("otel_llm_metrics: error while %s", doing)

    def measure_upstream_calls(self, instrument: bool = True) -> list[str]:
        """Measure the LLM calls this process makes, at its HTTP clients (httpx, httpx2, aiohttp); names them."""
        return instrumentors.install(self.settings, self.registry.gen_ai, instrument=instrument)

    # -- wrapping apps --------------------------------------------------------------------------
    def instrument(self, app: Any) -> Any:
        """Wrap any ASGI app; with tracing on, the middleware makes the one server span per request."""
        quiet_native_telemetry(app, tracing=self.tracer_provider is not None)
        push_when_servers_stop(self)
        return MetricsMiddleware(app, self)

    def add_to(self, app: Any) -> None:
        """Add the middleware to a Starlette/FastAPI app in place (before it starts serving)."""
        quiet_native_telemetry(app, tracing=self.tracer_provider is not None)
        push_when_servers_stop(self)
        app.add_middleware(MetricsMiddleware, telemetry=self)

    # -- shutdown -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Flush and stop by the exit deadline (a dead collector included), shared with an earlier push."""
        if self._shut_down:
            return
        self._shut_down = True
        self.loop_monitor.stop()
        deadline = self.exit_deadline()
        timeout_ms = int(max(0.0, deadline - monotonic()) * 1000)

        def stop() -> None:
            if self.merged is not None:  # every worker's last numbers in the server's last merged push
                self.merged.final(deadline)

            def end(provider: Any) -> None:
                if provider not in self._owned_providers:  # theirs: flushed, their own exit stops them
                    provider.force_flush(timeout_ms)
                elif isinstance(provider, MeterProvider):
                    provider.shutdown(timeout_millis=timeout_ms)
                else:
                    provider.shutdown()
            self._each_provider(end, "shutting down")

        worker = threading.Thread(target=stop, name="otel-llm-metrics-shutdown", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # Python 3.12+ at interpreter exit (atexit): no new threads; the exporters' own
            stop()            # timeouts bound this, as the metric shutdown is given what is left of the bound
        else:
            worker.join(max(0.0, deadline - monotonic()))
        if worker.is_alive():
            logger.warning("otel_llm_metrics: the exporters did not stop within the exit bound "
                           "(OTEL_LLM_METRICS_SHUTDOWN_TIMEOUT=%.1fs); gave up waiting",
                           self.settings.shutdown_timeout_s)
        if self.endpoint is not None:
            self.endpoint.stop()


_TELEMETRIES: weakref.WeakSet[Telemetry] = weakref.WeakSet()


def _sdk_logger_provider() -> Any:  # noqa: ANN401 - an SDK LoggerProvider, or None
    """The global logger provider when it is the SDK's (ours from OTEL_LOGS_EXPORTER, a distro's, the app's)."""
    if "opentelemetry.sdk._logs" not in sys.modules:
        return None  # nobody set SDK logs up in this process
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider

    provider = get_logger_provider()
    return provider if isinstance(provider, LoggerProvider) else None


def existing_providers() -> tuple[MeterProvider | None, TracerProvider | None]:
    """The SDK providers someone set globally before us (not ours): those we attach to."""
    ours = {id(p) for t in _TELEMETRIES for p in (t.meter_provider, t.tracer_provider) if p is not None}
    meters, tracers = metrics.get_meter_provider(), trace.get_tracer_provider()
    return (meters if isinstance(meters, MeterProvider) and id(meters) not in ours else None,
            tracers if isinstance(tracers, TracerProvider) and id(tracers) not in ours else None)


def wants_endpoint(settings: Settings, *, attached: bool) -> bool:
    """The embedded endpoint: by default on our own pipeline; beside someone else's only when asked for by name."""
    if settings.app_metrics_path:
        return True
    if attached:
        return "prometheus" in os.environ.get("OTEL_METRICS_EXPORTER", "").lower()
    return "prometheus" in settings.metrics_exporters


def measuring(settings: Settings) -> frozenset[str]:
    """What of ours makes gen_ai.client.* numbers of calls: each client instrumentor at work (upstream calls on, not
    left out by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS) by its entry point name, and "spans" with tracing on. Other
    libraries' numbers of calls none of these sees are the only ones (frameworks.COPYING_SCOPES)."""
    names = {name for name in instrumentors.INSTRUMENTORS if not instrumentors.disabled(name)}
    return frozenset((names if settings.upstream_calls else set()) | ({SPANS} if settings.tracing else set()))


def client_numbers_ours(settings: Settings) -> bool:
    """Whether we make the gen_ai.client.* numbers of calls over httpx (other libraries' are then copies)."""
    return bool(measuring(settings) & OVER_HTTPX)


def owned_names(settings: Settings, latest_experimental: bool) -> frozenset[str]:
    """The instrument names this process publishes with these settings: other scopes' copies are dropped."""
    groups = {"process": catalogue.PROCESS_SPECS, "system": catalogue.SYSTEM_SPECS, "gpu": catalogue.GPU_SPECS}
    skipped = {spec for group, specs in groups.items() if group not in settings.resources for spec in specs}
    if not measuring(settings):  # then another library's gen_ai.client.* are the only ones
        skipped |= {*catalogue.CALLS_MADE_SPECS, *catalogue.LATEST_EXPERIMENTAL}
    published = catalogue.published(latest_experimental)
    return frozenset(spec.name for spec in published if spec not in skipped)


def _running_async_library() -> str | None:
    """The async library running in this thread ("trio", "asyncio"...), or None (sniffio, where installed)."""
    try:
        import sniffio

        return sniffio.current_async_library()
    except Exception:
        return None


def _after_fork_in_child() -> None:
    """One hook for all live Telemetries (held weakly: a hook per object would keep each alive)."""
    for telemetry in list(_TELEMETRIES):
        telemetry._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def install(settings: Settings, *, set_global: bool = True, adopt: bool = False,
            instrument_clients: bool = True) -> Telemetry:
    """Create this process's Telemetry and make it the current (and global OTel) one; ``adopt``: the SDK's
    configuration has just built the providers for us (auto.Configurator); ``instrument_clients``: patch the HTTP
    client libraries here (zero code loads their instrumentors' entry points itself)."""
    global _current
    with _current_lock:
        if _current is not None:
            return _current
        if settings.log_format == "json":  # first, so that our own start-up lines are JSON too
            log_format.install()
        theirs = existing_providers()
        telemetry = Telemetry(settings, theirs=theirs, adopted=adopt)
        if theirs != (None, None) and not adopt:
            logger.info("otel_llm_metrics: attached to the OpenTelemetry SDK providers already set up in this "
                        "process (metrics: %s, traces: %s)", *(type(p).__name__ if p else "ours" for p in theirs))
        if set_global:
            if theirs[0] is None:
                metrics.set_meter_provider(telemetry.meter_provider)
            if theirs[1] is None and telemetry.tracer_provider is not None:
                trace.set_tracer_provider(telemetry.tracer_provider)
        atexit.register(telemetry.shutdown)
        if settings.upstream_calls:
            telemetry.measure_upstream_calls(instrument=instrument_clients)
        if ROLE.serves_endpoint_from_start():
            telemetry.start_endpoint_now()
        _current = telemetry
        return telemetry


def current_telemetry() -> Telemetry:
    """The installed Telemetry, installing one from the environment on first use."""
    return _current if _current is not None else install(load_settings())


def setup(app: Any = None, **settings: Any) -> Telemetry:
    """One call at start-up: read settings (kwargs win over OTEL_* variables), install, instrument.

    A Starlette or FastAPI ``app`` gets the middleware added in place. For any other ASGI
    callable, wrap it yourself: ``app = setup().instrument(app)``.
    """
    if _current is not None and settings:
        logger.warning("otel_llm_metrics.setup() was called again; keeping the first settings")
    if _current is None:
        try:
            loaded = load_settings(**settings)
        except ConfigError as error:
            _print_alone_if_uncaught(error)
            raise
        if loaded.disabled:  # OTEL_SDK_DISABLED: nothing global, nothing exported, the app untouched
            logger.info("otel_llm_metrics: disabled by OTEL_SDK_DISABLED")
            nothing = replace(loaded, metrics_exporters=("none",), traces_exporter=("none",), resources=("none",),
                              loop_lag_interval=0.0)
            return Telemetry(nothing, Registry())
    telemetry = _current if _current is not None else install(loaded)
    if app is not None:
        if not hasattr(app, "add_middleware"):
            error = ConfigError("setup(app): this app has no add_middleware (not Starlette/FastAPI). "
                                "Fix: app = otel_llm_metrics.setup().instrument(app)")
            _print_alone_if_uncaught(error)
            raise error
        telemetry.add_to(app)
    return telemetry


def _print_alone_if_uncaught(error: ConfigError) -> None:
    """Should ``error`` reach the top of the program, print its message and fix, not a traceback.

    A program may still catch it; only an uncaught one is shown this way (sys.excepthook).
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        if value is error:
            print(f"otel_llm_metrics: configuration error: {value}", file=sys.stderr, flush=True)
        else:
            previous(kind, value, traceback)

    sys.excepthook = hook
