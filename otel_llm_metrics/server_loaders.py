"""Zero code under any ASGI server: each app measured once, where it is built or where the server loads it.

- **Starlette and FastAPI apps** (subclasses included) are wrapped where the app builds its middleware
  stack, under whichever server runs it. The hook is the assignment of the built stack to
  ``app.middleware_stack``, not ``build_middleware_stack``: FastAPI overrides that method without calling
  Starlette's, and opentelemetry-instrumentation-fastapi replaces it per app and refuses a stack that does
  not start with its ``ServerErrorMiddleware``. Every builder assigns its result, so the stack that serves
  is ``MetricsMiddleware(stack)``, outermost, lifespan scope included. The class gets a descriptor with
  ``__set__`` and no ``__get__``: reads still find the instance's own attribute (Python's attribute
  lookup), only unspecialised by the interpreter: about 25 ns more a read on CPython 3.11 here, two a
  request, against microseconds for the middleware itself.
- **Anything else** (a bare ASGI callable, or an app inside a wrapper of its own) is wrapped where the
  server loads it: uvicorn's ``Config.load`` (so ``--workers``, gunicorn's ``UvicornWorker`` and
  ``fastapi run`` too), hypercorn's ``utils.wrap_app`` (asyncio, uvloop and trio workers), and granian's
  ``serve`` for its ``asgi`` and ``asginl`` interfaces (each worker loads the target through us). A
  Starlette app such a wrapper holds is marked measured, so its stack is not wrapped a second time.
- An app measured already (``setup(app)``, ``setup().instrument(app)``, our middleware added by hand) is
  left as it is.

The hooks are placed when each module is first imported (wrapt's post-import hooks, which
opentelemetry-instrumentation depends on), so a process imports no server it does not use.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

from .frameworks import MEASURED, quiet_app_telemetry, wrapper_chain
from .http.middleware import MetricsMiddleware
from .process_role import ROLE
from .runtime import Telemetry, current_telemetry
from .server_hooks import push_when_servers_stop

logger = logging.getLogger(__name__)

_STACK = "middleware_stack"
_QUIETED = "_otel_llm_metrics_quieted"  # native telemetry turned off once per app, before it serves
_OURS = "_otel_llm_metrics_hook"
_ABSENT = object()
_ASGI_INTERFACES = ("asgi", "asginl")  # granian: ASGI with and without lifespan (rsgi and wsgi are not ASGI)

_patched: list[tuple[Any, str, Any]] = []  # (owner, name, what was there), undone by uninstall()
_active = False
_registered = False


# -- Starlette and FastAPI: where the app builds its stack ----------------------------------------------
class _MeasuredStack:
    """``Starlette.middleware_stack``, written through here and read as the plain instance attribute."""

    def __set__(self, app: Any, stack: Any) -> None:
        app.__dict__[_STACK] = _measured_stack(app, stack)

    def __delete__(self, app: Any) -> None:
        del app.__dict__[_STACK]


def builds_measured_stack(app: Any) -> bool:
    """Whether ``app``'s stack gets our middleware when it is built (a Starlette app, the hook in place)."""
    return isinstance(getattr(type(app), _STACK, None), _MeasuredStack)


def _measured_stack(app: Any, stack: Any) -> Any:
    """The stack ``app`` built, with our middleware outermost unless the app is measured already."""
    if stack is None or _measured(app, stack):
        return stack
    try:
        telemetry = current_telemetry()
        if telemetry.settings.disabled:
            return stack
        before = app.__dict__.get(_STACK)
        # Taking another instrumentation's middleware off rebuilds the stack (FastAPIInstrumentor's
        # uninstrument_app): the rebuilt one came back through here, and is the one to keep.
        _quiet_once(app, telemetry)
        rebuilt = app.__dict__.get(_STACK)
        if rebuilt is not before and isinstance(rebuilt, MetricsMiddleware):
            return rebuilt
        push_when_servers_stop(telemetry)
        return MetricsMiddleware(stack, telemetry)
    except Exception:  # the app must serve even if we cannot measure it
        logger.exception("otel_llm_metrics could not instrument %s; it runs uninstrumented", type(app).__name__)
        return stack


def _measured(app: Any, stack: Any) -> bool:
    """Measured already: from around (marked), or by our middleware in its own stack (``setup(app)``)."""
    if app.__dict__.get(MEASURED):
        return True
    for entry in getattr(app, "user_middleware", None) or ():
        cls = getattr(entry, "cls", None)
        if isinstance(cls, type) and issubclass(cls, MetricsMiddleware):
            return True
    return any(isinstance(inner, MetricsMiddleware) for inner in wrapper_chain(stack))


def _quiet_once(app: Any, telemetry: Telemetry) -> None:
    """FastAPI's native numbers off, and other server spans when ours are made: once, before it serves."""
    if app.__dict__.get(_QUIETED):
        return
    app.__dict__[_QUIETED] = True
    quiet_app_telemetry(app, tracing=telemetry.tracer_provider is not None)


def _hook_starlette(module: Any) -> None:
    _patch(module.Starlette, _STACK, _MeasuredStack())


# -- anything else: where the server loads the app ------------------------------------------------------
def measure_loaded(app: Any, server_wrapper: Callable[[Any], bool] = lambda _: False) -> Any:
    """The app a server loaded, measured once; ``server_wrapper`` tells the server's own wrappers around it."""
    try:
        ROLE.now_serving()  # the server loads its app where it serves (in each worker)
        telemetry = current_telemetry()
        if telemetry.settings.disabled:
            return app
        users = app
        while server_wrapper(users) and getattr(users, "app", None) is not None:
            users = users.app
        if isinstance(users, MetricsMiddleware):  # setup().instrument(app) in the app's module
            return app
        if builds_measured_stack(users):  # measured where it is built; its native numbers off before it starts
            _quiet_once(users, telemetry)
            return app
        return telemetry.instrument(app)
    except Exception:  # the app must start even if we cannot measure it
        logger.exception("otel_llm_metrics could not instrument the app; it runs uninstrumented")
        return app


def _is_uvicorn_wrapper(app: Any) -> bool:
    """uvicorn's own layers around the loaded app (proxy headers, message logger, WSGI and ASGI2 adapters)."""
    return type(app).__module__.startswith("uvicorn.")


def _hook_uvicorn(module: Any) -> None:
    config_class = module.Config
    original = config_class.load

    def load(config: Any) -> None:
        original(config)
        config.loaded_app = measure_loaded(config.loaded_app, _is_uvicorn_wrapper)

    _patch(config_class, "load", load)


def _hook_hypercorn(module: Any) -> None:
    """``hypercorn.utils.wrap_app``: ``load_application`` calls it in each worker with the user's app."""
    original = module.wrap_app
    is_asgi = module.is_asgi
    signature = inspect.signature(original)

    def wrap_app(app: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            mode = signature.bind(app, *args, **kwargs).arguments.get("mode")
            if (mode or ("asgi" if is_asgi(app) else "wsgi")) == "asgi":  # a WSGI app is left alone
                app = measure_loaded(app)
        except Exception:  # the server starts whatever happens here
            logger.exception("otel_llm_metrics could not instrument the app; it runs uninstrumented")
        return original(app, *args, **kwargs)

    _patch(module, "wrap_app", wrap_app)


def load_granian_target(target: str, wd: Any = None, factory: bool = False) -> Any:
    """granian's own loader of ``module:app``, then measured; runs in each worker (picklable for spawn).

    granian's workers are multiprocessing children, which end with ``os._exit``: ``atexit`` never runs
    there, so an app without lifespan would lose its last numbers. multiprocessing's own exit
    finalizers do run: ``Telemetry.shutdown`` (the ``atexit`` one, run once) pushes them, within the bound.
    """
    from multiprocessing import util

    from granian.server.common import load_target

    where = {} if wd is None else {"wd": wd}  # older granian has no working directory
    app = measure_loaded(load_target(target, factory=factory, **where))
    telemetry = current_telemetry()
    if not telemetry.settings.disabled:
        util.Finalize(None, telemetry.shutdown, exitpriority=0)
    return app


def _hook_granian(module: Any) -> None:
    """``AbstractServer.serve`` without a loader of its own: ours, for the ASGI interfaces only."""
    server_class = module.AbstractServer
    original = server_class.serve
    signature = inspect.signature(original)
    if not {"target_loader", "wrap_loader"} <= signature.parameters.keys() or not hasattr(module, "load_target"):
        logger.info("otel_llm_metrics: this granian (%s) loads apps in a way zero code does not know; wrap the app "
                    "with setup() instead", getattr(sys.modules.get("granian"), "__version__", "?"))
        return

    def serve(self: Any, *args: Any, **kwargs: Any) -> Any:
        ROLE.become_master(_workers(getattr(self, "workers", None)))  # granian's main process supervises
        try:
            bound = signature.bind(self, *args, **kwargs)
            interface = getattr(self.interface, "value", self.interface)
            if bound.arguments.get("target_loader") is None and interface in _ASGI_INTERFACES:
                bound.arguments["target_loader"] = functools.partial(
                    load_granian_target, wd=getattr(self, "working_dir", None), factory=getattr(self, "factory", False))
                bound.arguments["wrap_loader"] = True  # granian passes the target first
                args, kwargs = bound.args[1:], bound.kwargs
        except Exception:  # the server starts whatever happens here
            logger.exception("otel_llm_metrics could not hook granian's app loading; the app runs uninstrumented")
        return original(self, *args, **kwargs)

    _patch(server_class, "serve", serve)


# -- masters: the processes that supervise workers collect nothing (process_role) ---------------------------
def _supervising(original: Callable[..., Any], workers: Callable[..., Any]) -> Callable[..., Any]:
    """``original``, run as a master when ``workers(*its arguments)``, the number of workers it starts, is not 0."""
    def supervise(*args: Any, **kwargs: Any) -> Any:
        try:
            count = _workers(workers(*args, **kwargs))
            if count != 0:
                ROLE.become_master(count)
        except Exception:  # the server starts whatever happens here
            logger.exception("otel_llm_metrics could not tell whether this process supervises workers")
        return original(*args, **kwargs)

    return supervise


def _workers(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hook_gunicorn(module: Any) -> None:
    _patch(module.Arbiter, "run", _supervising(module.Arbiter.run, lambda arbiter: arbiter.num_workers))


def _hook_uvicorn_workers(module: Any) -> None:
    _patch(module.Multiprocess, "run", _supervising(module.Multiprocess.run, lambda self: self.processes_num))


def _hook_uvicorn_reload(module: Any) -> None:
    _patch(module.BaseReload, "run", _supervising(module.BaseReload.run, lambda self: 1))


def _hook_hypercorn_run(module: Any) -> None:
    """``hypercorn.run.run(config)``: with workers (1 by default) it spawns them and serves nothing itself."""
    _patch(module, "run", _supervising(module.run, lambda config, *a, **k: getattr(config, "workers", 0)))


# -- placing and removing the hooks ---------------------------------------------------------------------
_HOOKS: tuple[tuple[str, Callable[[Any], None]], ...] = (
    ("starlette.applications", _hook_starlette),
    ("uvicorn.config", _hook_uvicorn),
    ("hypercorn.utils", _hook_hypercorn),
    ("granian.server.common", _hook_granian),
    ("gunicorn.arbiter", _hook_gunicorn),
    ("uvicorn.supervisors.multiprocess", _hook_uvicorn_workers),
    ("uvicorn.supervisors.basereload", _hook_uvicorn_reload),
    ("hypercorn.run", _hook_hypercorn_run),
)


def install() -> None:
    """Place each hook when its module is imported (at once for one imported already)."""
    global _active, _registered
    _active = True
    if not _registered:
        import wrapt

        _registered = True
        for name, hook in _HOOKS:
            wrapt.register_post_import_hook(functools.partial(_run_hook, hook), name)
    else:  # installed again after uninstall(): wrapt keeps the registrations, which ran already
        for name, hook in _HOOKS:
            if name in sys.modules:
                _run_hook(hook, sys.modules[name])


def uninstall() -> None:
    global _active
    _active = False
    while _patched:
        owner, name, previous = _patched.pop()
        if previous is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, previous)


def _run_hook(hook: Callable[[Any], None], module: Any) -> None:
    if not _active:
        return
    try:
        hook(module)
    except Exception:  # a server we cannot hook still serves; setup() in the app measures it
        logger.exception("otel_llm_metrics could not hook %s; apps it serves need setup()", module.__name__)


def _patch(owner: Any, name: str, replacement: Any) -> None:
    """Set ``owner.name``, once, remembering what was there."""
    current = owner.__dict__.get(name, _ABSENT)
    if getattr(current, _OURS, False) or isinstance(current, _MeasuredStack):
        return
    if not isinstance(replacement, _MeasuredStack):
        if current is not _ABSENT:
            functools.update_wrapper(replacement, current)  # its name, doc and __wrapped__: ours is plainly a wrapper
        setattr(replacement, _OURS, True)
    _patched.append((owner, name, current))
    setattr(owner, name, replacement)
