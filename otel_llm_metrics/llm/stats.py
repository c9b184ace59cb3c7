"""GenAI numbers of one process: histogram groups for the server side (what this app served,
written by the event loop) and the client side (the calls it made upstream, measured at its HTTP
client or derived from spans, from whatever thread makes them), and a cap on distinct model names."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import CounterGroup, GaugeGroup, HistogramGroup, SharedCounterGroup, SharedHistogramGroup
from .prices import PriceBook, read_overrides

MAX_VALUE_LENGTH = 128
SERVER_INSTRUMENTS = {"duration": c.GEN_AI_SERVER_DURATION, "time_to_first_token": c.GEN_AI_SERVER_TTFT,
                      "time_per_output_token": c.GEN_AI_SERVER_TPOT}
CLIENT_INSTRUMENTS = {"duration": c.GEN_AI_CLIENT_DURATION, "time_to_first_chunk": c.GEN_AI_CLIENT_TTFC,
                      "time_per_output_chunk": c.GEN_AI_CLIENT_TPOC}
LATEST_CLIENT_INSTRUMENTS = {"duration": c.GEN_AI_CLIENT_INFERENCE_DURATION,
                             "time_to_first_chunk": c.GEN_AI_CLIENT_INFERENCE_TTFC,
                             "time_per_output_chunk": c.GEN_AI_CLIENT_INFERENCE_TPOC}
LATEST_CLIENT_TOKENS = {"input_tokens": c.GEN_AI_CLIENT_OPERATION_INPUT_TOKENS,
                        "output_tokens": c.GEN_AI_CLIENT_OPERATION_OUTPUT_TOKENS}


def operation_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                  error_type: str | None) -> tuple:
    """A GenAI duration series' attribute values, in the order of ``catalogue.GEN_AI_ATTRS``."""
    return (operation, provider, request_model, response_model, error_type)


def server_token_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                     token_type: str, estimated: bool, tenant: str | None = None) -> tuple:
    """A server token series' attribute values, in the order of ``catalogue.GEN_AI_TOKEN_ATTRS``."""
    return (operation, provider, request_model, response_model, token_type, estimated, tenant)


def response_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                 finish_reason: str | None) -> tuple:
    """A response count's attribute values, in the order of ``catalogue.GEN_AI_RESPONSE_ATTRS``."""
    return (operation, provider, request_model, response_model, finish_reason)


def client_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
               address: str | None, port: int | None, error_type: str | None) -> tuple:
    """A client call series' attribute values, in the order of ``catalogue.GEN_AI_CLIENT_ATTRS``."""
    return (operation, provider, request_model, response_model, address, port, error_type)


def client_token_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                     address: str | None, port: int | None, token_type: str, estimated: bool | None = None,
                     tenant: str | None = None) -> tuple:
    """A client token series' attribute values, in the order of ``GEN_AI_CLIENT_TOKENS.attributes``."""
    return (operation, provider, request_model, response_model, address, port, token_type, estimated, tenant)


def cost_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
             tenant: str | None) -> tuple:
    """A served cost series' attribute values, in the order of ``catalogue.GEN_AI_COST_ATTRS``."""
    return (operation, provider, request_model, response_model, tenant)


def client_cost_key(operation: str, provider: str | None, request_model: str | None, response_model: str | None,
                    address: str | None, tenant: str | None) -> tuple:
    """A calls-made cost series' attribute values, in the order of ``catalogue.GEN_AI_CLIENT_COST_ATTRS``."""
    return (operation, provider, request_model, response_model, address, tenant)


def attempt_key(operation: str, provider: str | None, request_model: str | None, address: str | None,
                port: int | None, error_type: str | None) -> tuple:
    """An attempt count's attribute values, in the order of ``GEN_AI_CLIENT_ATTEMPTS.attributes``."""
    return (operation, provider, request_model, address, port, error_type)


def rate_limit_key(provider: str | None, address: str | None, port: int | None, request_model: str | None,
                   resource: str) -> tuple:
    """A rate-limit gauge's attribute values, in the order of its spec's attributes."""
    return (provider, address, port, request_model, resource)


class CallTokens(NamedTuple):
    """One call's usage as reported (None: not reported); ``input`` includes cached, ``output`` reasoning tokens.

    A tuple: one is made per LLM record on the request path."""

    input: int | None
    output: int | None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    estimated: bool = False  # output counted from content deltas


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
        self.latest_experimental = False  # OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: see configure()
        self.client = SharedHistogramGroup(CLIENT_INSTRUMENTS, max_series)
        self.client_tokens = SharedHistogramGroup({"tokens": c.GEN_AI_CLIENT_TOKENS}, max_series)
        self.client_usage: tuple[SharedCounterGroup, ...] = ()  # the opt-in's token counters
        self.retry_after = SharedHistogramGroup({"wait": c.GEN_AI_CLIENT_RETRY_AFTER}, max_series)
        self.attempts = SharedCounterGroup(c.GEN_AI_CLIENT_ATTEMPTS, max_series)
        self.rate_limit_remaining = GaugeGroup(c.GEN_AI_CLIENT_RATE_LIMIT_REMAINING, max_series)
        self.rate_limit = GaugeGroup(c.GEN_AI_CLIENT_RATE_LIMIT, max_series)
        self.responses = CounterGroup(c.GEN_AI_SERVER_RESPONSES, max_series)
        # Cost: written by the loop, client threads and the price table's loader alike, so all shared.
        self.client_cost = SharedCounterGroup(c.GEN_AI_CLIENT_COST, max_series)
        self.client_unpriced_calls = SharedCounterGroup(c.GEN_AI_CLIENT_UNPRICED_CALLS, max_series)
        self.client_unpriced_tokens = SharedCounterGroup(c.GEN_AI_CLIENT_UNPRICED_TOKENS, max_series)
        self.server_cost = SharedCounterGroup(c.GEN_AI_SERVER_COST, max_series)
        self.server_unpriced_calls = SharedCounterGroup(c.GEN_AI_SERVER_UNPRICED_CALLS, max_series)
        self.server_unpriced_tokens = SharedCounterGroup(c.GEN_AI_SERVER_UNPRICED_TOKENS, max_series)
        self.prices: PriceBook | None = None  # set when cost is on
        self.tenants = ValueLimiter(100)  # tenant.id values: client-supplied, so capped like model names
        self.measured_at_the_wire = False  # set when the HTTP client hooks are on: then spans add no client numbers
        self.models = ValueLimiter(max_model_names)
        self.finish_reasons = ValueLimiter(max_model_names)  # upstreams may invent their own
        self.hosts = ValueLimiter(max_model_names)  # upstream server.address values: any host counts

    def histogram_groups(self) -> tuple[HistogramGroup, ...]:
        return (self.server, self.server_tokens, self.client, self.client_tokens, self.retry_after)

    def _counters(self) -> tuple[CounterGroup, ...]:
        return (*self.client_usage, self.responses, self.attempts, self.rate_limit_remaining, self.rate_limit,
                self.client_cost, self.client_unpriced_calls, self.client_unpriced_tokens, self.server_cost,
                self.server_unpriced_calls, self.server_unpriced_tokens)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {group.spec: group.observe for group in self._counters()}

    def configure(self, max_series: int, max_model_names: int, latest_experimental: bool | None = None) -> None:
        """Caps, and which GenAI conventions the calls made follow (from the standard opt-in unless told)."""
        if latest_experimental is None:
            latest_experimental = c.gen_ai_latest_experimental()
        if latest_experimental != self.latest_experimental:
            self._follow(latest_experimental, max_series)
        for group in self._counters():
            group.max_series = max_series
        self.models.max_values = self.finish_reasons.max_values = self.hosts.max_values = max_model_names

    def _follow(self, latest_experimental: bool, max_series: int) -> None:
        """The calls made's instruments under the latest released GenAI conventions (v1.41) or the newest ones.

        Set once at start-up, before instruments are created and before traffic.
        """
        self.latest_experimental = latest_experimental
        if latest_experimental:
            self.client = SharedHistogramGroup(LATEST_CLIENT_INSTRUMENTS, max_series)
            self.client_tokens = SharedHistogramGroup(LATEST_CLIENT_TOKENS, max_series)
            self.client_usage = tuple(SharedCounterGroup(spec, max_series) for spec in c.GEN_AI_CLIENT_USAGE_SPECS)
        else:
            self.client = SharedHistogramGroup(CLIENT_INSTRUMENTS, max_series)
            self.client_tokens = SharedHistogramGroup({"tokens": c.GEN_AI_CLIENT_TOKENS}, max_series)
            self.client_usage = ()

    def record_client_tokens(self, base: tuple, error_type: str | None, tokens: CallTokens | None,
                             tenant: str | None) -> None:
        """One call made's tokens. ``base``: (operation, provider, request model, response model, address, port).

        Released conventions: one histogram observation per reported total. Latest experimental: the per-type
        counters (0 and modality ``unknown`` for what was not reported, as they ask) and per-call histograms.
        """
        if not self.latest_experimental:
            if tokens is None:
                return
            if tokens.input is not None:
                self.client_tokens.record((*base, "input", None, tenant), "tokens", tokens.input)
            if tokens.output is not None:
                self.client_tokens.record((*base, "output", tokens.estimated or None, tenant), "tokens",
                                          tokens.output)
            return
        tokens = tokens or CallTokens(None, None)
        group = self.client_tokens
        with group.lock:
            series = group.get((*base, error_type, tenant))
            series.input_tokens.record(tokens.input or 0)
            series.output_tokens.record(tokens.output or 0)
        input_tokens, output_tokens, cache_read, cache_write, reasoning = self.client_usage
        key = (*base, "unknown", tenant)  # gen_ai.token.modality: no provider we parse breaks usage down by it
        input_tokens.add(key, tokens.input or 0)
        output_tokens.add((*base, "unknown", tokens.estimated or None, tenant), tokens.output or 0)
        cache_read.add(key, tokens.cache_read or 0)
        cache_write.add(key, tokens.cache_write or 0)
        reasoning.add(key, tokens.reasoning or 0)

    def configure_cost(self, cost: bool, prices_file: str | None, max_tenants: int) -> None:
        """Cost on: a price book over the user's prices (validated at start-up already); the table loads later."""
        self.prices = PriceBook(read_overrides(prices_file) if prices_file else None) if cost else None
        self.tenants.max_values = max_tenants

    def reset(self) -> None:
        if self.prices is not None:
            self.prices.after_fork()
        for group in self.histogram_groups():
            group.reset()
        for group in self._counters():
            group.reset()
