"""GenAI numbers of one process: histogram groups for the server side (what this app served) and
the client side (what it called upstream, from spans), and a cap on distinct model names."""

from __future__ import annotations

import threading

from .. import catalogue as c
from ..series import HistogramGroup

OTHER = "_OTHER"
MAX_VALUE_LENGTH = 128


class ValueLimiter:
    """Caps distinct values of a client-supplied attribute (model names) and their length."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # the span processor may call from other threads

    def __call__(self, value: str | None) -> str | None:
        if value is None or value in self._seen:
            return value
        value = "".join(ch for ch in value[:MAX_VALUE_LENGTH] if ch.isprintable()) or OTHER
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.max_values:
                return OTHER
            self._seen.add(value)
        return value


class GenAiStats:
    def __init__(self, max_series: int = 2000, max_model_names: int = 100) -> None:
        self.server = HistogramGroup((c.GEN_AI_SERVER_DURATION, c.GEN_AI_SERVER_TTFT, c.GEN_AI_SERVER_TPOT),
                                     max_series)
        self.server_tokens = HistogramGroup((c.GEN_AI_SERVER_TOKENS,), max_series)
        self.client = HistogramGroup((c.GEN_AI_CLIENT_DURATION,), max_series)
        self.client_tokens = HistogramGroup((c.GEN_AI_CLIENT_TOKENS,), max_series)
        self.models = ValueLimiter(max_model_names)

    def groups(self) -> tuple[HistogramGroup, ...]:
        return (self.server, self.server_tokens, self.client, self.client_tokens)

    def reset(self) -> None:
        for group in self.groups():
            group.reset()
