"""Blocking work started from the app's event loop, whatever async library runs it (asyncio, uvloop, trio).

anyio speaks to each library in its own terms, so nothing here assumes asyncio. A bounded wait runs the
work on a daemon thread of its own and only the wait on a worker thread: a worker returns by the
bound, so neither the loop nor the interpreter's exit ever waits on work that hangs (a dead collector).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

logger = logging.getLogger(__name__)
T = TypeVar("T")


async def in_thread(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` on a worker thread, so the loop keeps serving meanwhile."""
    return await anyio.to_thread.run_sync(work, *args)


async def within(work: Callable[[], object], timeout: float, name: str) -> bool:
    """Run ``work`` on a daemon thread; wait for it at most ``timeout`` seconds. True if it finished."""
    finished = threading.Event()

    def run() -> None:
        try:
            work()
        except Exception:
            logger.exception("otel_llm_metrics: %s failed", name)
        finally:
            finished.set()

    threading.Thread(target=run, name=f"otel-llm-metrics-{name}", daemon=True).start()
    return await anyio.to_thread.run_sync(finished.wait, max(0.0, timeout))
