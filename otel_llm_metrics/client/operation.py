"""The owner of one LLM operation: an ``openai`` or ``anthropic`` SDK call, whose own retry loop makes all its attempts.

The SDKs' base clients (``SyncAPIClient.request`` / ``AsyncAPIClient.request`` in ``openai._base_client`` and
``anthropic._base_client``) run every attempt of one call, retries included, and return or raise once. Each such
call opens an ``Operation`` in a context variable for its duration. An attempt that fails in a way the SDK may
retry (``client.call.Attempt``) is held by its operation instead of being recorded: the next attempt of the call
continues it, and when the call returns or raises a still-held attempt is recorded as the operation's failure.
No attempt outlives its call in a context variable, so a call in a background task or thread, with no served
request around it, is recorded all the same. Held attempts are also listed (weakly, and boundedly) for
``flush``, which the process's last push runs.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

logger = logging.getLogger(__name__)
SDK_MODULES = ("openai._base_client", "anthropic._base_client")
MAX_HELD = 10_000  # operations holding a failed attempt at once; past that a failure is recorded at once


class Held(Protocol):
    """A failed attempt whose SDK may retry it (``client.call.Attempt``)."""

    def end_operation(self) -> None: ...


class Operation:
    """One SDK call's attempts; holds the last one while the SDK may still retry it."""

    __slots__ = ("held", "closed", "__weakref__")

    def __init__(self) -> None:
        self.held: Held | None = None
        self.closed = False

    def hold(self, attempt: Held) -> bool:
        """Keep ``attempt`` until the call's next attempt or its end; False when the call is over (record it now)."""
        with _LOCK:
            if self.closed or len(_HELD) >= MAX_HELD:
                return False
            self.held = attempt
            _HELD.add(self)
        if self.closed:  # the call ended meanwhile (``close`` takes no lock when nothing is held): one claims it
            return self.take() is None
        return True

    def take(self) -> Held | None:
        """The held attempt, claimed once: by the call's next attempt, its end, or ``flush``."""
        with _LOCK:
            held, self.held = self.held, None
            if held is not None:
                _HELD.discard(self)
        return held

    def close(self) -> None:
        """The SDK call returned or raised: no retry follows, a held attempt was its last.

        Lock-free when nothing is held (every successful call): ``hold`` sets ``held`` before it reads ``closed``,
        this sets ``closed`` before it reads ``held``, so one of them sees the other, and ``take`` claims once.
        """
        self.closed = True
        if self.held is None:
            return
        held = self.take()
        if held is not None:
            held.end_operation()


CURRENT: ContextVar[Operation | None] = ContextVar("otel_llm_metrics_operation", default=None)
_LOCK = threading.Lock()
_HELD: weakref.WeakSet[Operation] = weakref.WeakSet()


def flush() -> None:
    """Record every attempt still held by a call in progress (the process is about to exit); each exactly once."""
    with _LOCK:
        operations = list(_HELD)
    for operation in operations:
        held = operation.take()
        if held is not None:
            held.end_operation()


# -- the SDKs' calls ---------------------------------------------------------------------------------
def _sync_call(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    if not _active:
        return wrapped(*args, **kwargs)
    operation = Operation()
    token = CURRENT.set(operation)
    try:
        return wrapped(*args, **kwargs)
    finally:
        CURRENT.reset(token)
        operation.close()


async def _async_call(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    if not _active:
        return await wrapped(*args, **kwargs)
    operation = Operation()
    token = CURRENT.set(operation)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        CURRENT.reset(token)
        operation.close()


_active = False  # whether SDK calls open operations (the wrappers stay if another wrapper went on top of ours)
_registered = False  # post-import hooks cannot be removed: registered once, they patch only while active
_patched: list[tuple[type, Any, Any]] = []  # (class, its own request, our wrapper)


def patch() -> None:
    """Open an operation per SDK call, in the SDKs imported now and in those imported later."""
    global _active, _registered
    _active = True
    if not _registered:
        _registered = True
        import wrapt

        for name in SDK_MODULES:  # runs the hook at once for a module already imported
            wrapt.register_post_import_hook(_patch_module, name)
        return
    for name in SDK_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            _patch_module(module)


def unpatch() -> None:
    """Put the SDKs' own methods back (where ours is still the outermost wrapper)."""
    global _active
    _active = False
    while _patched:
        owner, original, wrapper = _patched.pop()
        if owner.__dict__.get("request") is wrapper:
            owner.request = original


def _patch_module(module: Any) -> None:
    if not _active:
        return
    try:
        import wrapt

        for class_name, wrapper in (("SyncAPIClient", _sync_call), ("AsyncAPIClient", _async_call)):
            owner = getattr(module, class_name, None)
            original = owner.__dict__.get("request") if owner is not None else None
            if original is None or any(entry[0] is owner for entry in _patched):
                continue
            wrapt.wrap_function_wrapper(owner, "request", wrapper)
            _patched.append((owner, original, owner.__dict__["request"]))
    except Exception:  # an SDK we do not know: each attempt is then its own operation
        logger.warning("otel_llm_metrics: could not follow the retries of %s", module.__name__, exc_info=True)
