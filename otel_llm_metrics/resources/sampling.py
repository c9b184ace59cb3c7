"""A reading shared by all instruments of one collection, so psutil runs once per collection."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
FRESH_FOR = 0.25  # seconds: readers collecting together (Prometheus and OTLP) share one reading


class SharedReading(Generic[T]):
    """Calls ``read`` at most once per ``FRESH_FOR`` seconds and process; thread-safe (readers run in threads)."""

    def __init__(self, read: Callable[[], T]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = -1e9
        self._pid = os.getpid()

    def get(self) -> T:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at > FRESH_FOR or self._pid != os.getpid():
                self._pid = os.getpid()  # a forked child never reuses its parent's reading
                self._value = self._read()
                self._at = now
            return self._value
