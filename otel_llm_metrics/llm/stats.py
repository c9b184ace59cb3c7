"""GenAI numbers of one process: histogram groups for the server side (what this app served,
written by the event loop) and the client side (what it called upstream, derived from spans in
whatever thread ends them), and a cap on distinct model names."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import CounterGroup, HistogramGroup, SharedHistogramGroup

MAX_VALUE_LENGTH = 128
SERVER_INSTRUMENTS = {"duration": c.GEN_AI_SERVER_DURATION, "time_to_first_token": c.GEN_AI_SERVER_TTFT,
                      "time_per_output_token": c.GEN_AI_SERVER_TPOT}


def operation_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                  error_type: str | None) -> tuple:
    """A GenAI duration series' attribute values, in the order of ``catalogue.GEN_AI_ATTRS``."""
    return (operation, provider, request_model, response_model, error_type)


def server_token_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                     token_type: str, cache: str | None, phase: str | None, estimated: bool) -> tuple:
    """A server token series' attribute values, in the order of ``catalogue.GEN_AI_TOKEN_ATTRS``."""
    return (operation, provider, request_model, response_model, token_type, cache, phase, estimated)


def response_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                 finish_reason: str | None) -> tuple:
    """A response count's attribute values, in the order of ``catalogue.GEN_AI_RESPONSE_ATTRS``."""
    return (operation, provider, request_model, response_model, finish_reason)


def client_token_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                     token_type: str) -> tuple:
    """A client token series' attribute values, in the order of ``GEN_AI_CLIENT_TOKENS.attributes``."""
    return (operation, provider, request_model, response_model, token_type)


class ValueLimiter:
    """Caps distinct values of a client-supplied attribute (model names) and their length."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # the span processor may call from other threads

    def __call__(self, value: str | None) -> str | None:
        if value is None or value in self._seen:
            return value
        value = "".join(ch for ch in value[:MAX_VALUE_LENGTH] if ch.isprintable()) or c.OTHER
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.max_values:
                return c.OTHER
            self._seen.add(value)
        return value


class GenAiStats:
    def __init__(self, max_series: int = 2000, max_model_names: int = 100) -> None:
        self.server = HistogramGroup(SERVER_INSTRUMENTS, max_series)
        self.server_tokens = HistogramGroup({"tokens": c.GEN_AI_SERVER_TOKENS}, max_series)
        self.client = SharedHistogramGroup({"duration": c.GEN_AI_CLIENT_DURATION}, max_series)
        self.client_tokens = SharedHistogramGroup({"tokens": c.GEN_AI_CLIENT_TOKENS}, max_series)
        self.responses = CounterGroup(c.GEN_AI_SERVER_RESPONSES, max_series)
        self.models = ValueLimiter(max_model_names)
        self.finish_reasons = ValueLimiter(max_model_names)  # upstreams may invent their own

    def histogram_groups(self) -> tuple[HistogramGroup, ...]:
        return (self.server, self.server_tokens, self.client, self.client_tokens)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {c.GEN_AI_SERVER_RESPONSES: self.responses.observe}

    def configure(self, max_series: int, max_model_names: int) -> None:
        self.responses.max_series = max_series
        self.models.max_values = self.finish_reasons.max_values = max_model_names

    def reset(self) -> None:
        for group in self.histogram_groups():
            group.reset()
        self.responses.reset()
