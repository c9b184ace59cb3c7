"""GenAI numbers of one process: histogram groups for the server side (what this app served,
written by the event loop) and the client side (the calls it made upstream, measured at its HTTP
client or derived from spans, from whatever thread makes them), and a cap on distinct model names."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import NamedTuple

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..series import CounterGroup, GaugeGroup, Histogram, HistogramGroup, SharedCounterGroup, SharedHistogramGroup
from .prices import PENDING, PriceBook, Priced, Tokens, read_overrides

MAX_VALUE_LENGTH = 128
RateLimit = tuple[tuple[str, bool], int]  # ((resource, is the limit (else what remains)), value), from one header
MAX_BOUND = 4096  # call records kept bound; their keys hold raw (client-supplied) names, so they are bounded
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


def _add(group: CounterGroup, key: tuple, value: float) -> None:
    """``group.add`` for a caller that holds the shared lock already (the lock is not re-entrant)."""
    counts = group.counts
    if key in counts:
        counts[key] += value
    else:
        CounterGroup.add(group, key, value)


def _set(group: GaugeGroup, key: tuple, value: float) -> None:
    """``group.set`` for a caller that holds the shared lock already."""
    counts = group.counts
    if key not in counts:
        if len(counts) >= group.max_series:
            return
        group.attributes[key] = {k: v for k, v in zip(group.spec.attributes, key, strict=True) if v is not None}
    counts[key] = value


class ClientRecord:
    """The series one kind of LLM call made writes to, bound once per (operation, provider, request model,
    response model, server address, port, error type, tenant): its attribute keys are built, its names
    capped, its histograms looked up and its price plan resolved once, so a call costs one dict lookup
    (``GenAiStats.client_record``), one lock and plain increments (``ClientRecord.record``).

    Token series and rate-limit gauges are bound on first use (under the lock); a plan still ``PENDING``
    (the price table loading) is asked again by each call until it is known.
    """

    __slots__ = ("stats", "provider", "request_model", "response_model", "address", "port", "error_type", "tenant",
                 "raw_models", "series", "attempt_key", "base", "cost_key", "plan", "tokens", "gauges",
                 "retry_series")

    def __init__(self, stats: GenAiStats, operation: str, provider: str | None, request_model: str | None,
                 response_model: str | None, address: str | None, port: int | None, error_type: str | None,
                 tenant: str | None) -> None:
        self.stats = stats
        self.provider, self.port, self.error_type, self.tenant = provider, port, error_type, tenant
        self.raw_models = (response_model, request_model)  # what prices are looked up by: the upstream's names
        request_model = self.request_model = stats.models(request_model)
        response_model = self.response_model = stats.models(response_model)
        address = self.address = stats.hosts(address)
        self.base = (operation, provider, request_model, response_model, address, port)
        self.attempt_key = attempt_key(operation, provider, request_model, address, port, error_type)
        self.cost_key = client_cost_key(operation, provider, request_model, response_model, address, tenant)
        self.series = None  # the duration series, bound under the lock on first use
        self.plan: Priced | None | object = PENDING if stats.prices is not None else None
        self.tokens: dict[object, Histogram] = {}  # "input", or the output's estimated flag -> its histogram
        self.gauges: dict[tuple[str, bool], tuple[GaugeGroup, tuple]] = {}  # (resource, is limit) -> group, key
        self.retry_series: Histogram | None = None

    def price_plan(self) -> Priced | None | object:
        """The plan pricing these calls, resolved outside the lock (the price book has its own); PENDING
        while the table loads."""
        plan = self.plan
        if plan is PENDING and self.stats.prices is not None:
            plan = self.stats.prices.plan_for(self.provider, self.raw_models)
            if plan is not PENDING:
                self.plan = plan
        return plan

    def count_attempt(self, error_type: str | None, limits: list[RateLimit] | None,
                      retry_after: float | None) -> None:
        """One attempt whose operation goes on (its SDK may retry it), with what its answer's headers said."""
        with self.stats.lock:
            self._count_attempt(error_type, limits, retry_after)

    def _count_attempt(self, error_type: str | None, limits: list[RateLimit] | None,
                       retry_after: float | None) -> None:
        key = self.attempt_key if error_type == self.error_type else (*self.attempt_key[:-1], error_type)
        _add(self.stats.attempts, key, 1)
        if limits:
            self._limits(limits)
        if retry_after is not None:
            h = self.retry_series
            if h is None:
                h = self.retry_series = self.stats.retry_after.get((self.provider, self.address, self.port)).wait
            h.record(retry_after)

    def record(self, duration: float | None, first_chunk: float | None, gaps: Histogram | None,
               input_tokens: int | None, output_tokens: int | None, estimated: bool, cost: float | None,
               unpriced: bool, unpriced_tokens: Tokens | None, count_attempt: bool, attempt_error: str | None,
               limits: list[RateLimit] | None, retry_after: float | None) -> None:
        """Everything one call (an operation, ending with its last attempt) adds, under one lock.

        ``duration`` None: no duration (a stream its reader abandoned); ``first_chunk``: the time to the first
        chunk of a successful stream; ``cost``: its USD, else ``unpriced``: counted as unpriced (never as 0),
        with the tokens it reported (``unpriced_tokens``). The tokens' histograms under the released conventions
        only (the latest experimental ones are ``record_client_tokens``'s).
        """
        stats = self.stats
        with stats.lock:
            if count_attempt:
                self._count_attempt(attempt_error, limits, retry_after)
            if duration is not None:
                series = self.series
                if series is None:
                    series = self.series = stats.client.get(client_key(*self.base, self.error_type))
                h = series.duration  # Histogram.record inline (a call each costs more than the update)
                h.counts[bisect_left(h.bounds, duration)] += 1
                h.total += duration
                if duration < h.min:
                    h.min = duration
                if duration > h.max:
                    h.max = duration
                if first_chunk is not None:
                    series.time_to_first_chunk.record(first_chunk)
                    if gaps is not None:
                        series.time_per_output_chunk.merge(gaps)
            if not stats.latest_experimental:
                tokens = self.tokens
                for value, slot, flag, token_type in ((input_tokens, "input", None, "input"),
                                                      (output_tokens, estimated or None, estimated or None, "output")):
                    if value is not None:
                        h = tokens.get(slot) or self._tokens(token_type, slot, flag)
                        h.counts[bisect_left(h.bounds, value)] += 1
                        h.total += value
                        if value < h.min:
                            h.min = value
                        if value > h.max:
                            h.max = value
            if cost is not None:
                _add(stats.client_cost, self.cost_key, cost)
            elif unpriced:
                key = self.cost_key
                _add(stats.client_unpriced_calls, key, 1)
                if unpriced_tokens is not None:
                    head, tenant = key[:-1], key[-1]
                    _add(stats.client_unpriced_tokens, (*head, "input", tenant), unpriced_tokens.input)
                    if unpriced_tokens.output:
                        _add(stats.client_unpriced_tokens, (*head, "output", tenant), unpriced_tokens.output)

    def _tokens(self, token_type: str, slot: str | bool | None, estimated: bool | None) -> Histogram:
        """A token histogram of these calls, bound on first use (under the lock) in ``self.tokens[slot]``; input
        counts are never estimated (the attribute is left off them)."""
        key = client_token_key(*self.base, token_type, estimated, self.tenant)
        h = self.tokens[slot] = self.stats.client_tokens.get(key).tokens
        return h

    def _limits(self, limits: list[RateLimit]) -> None:
        """Rate-limit headroom: ((resource, is the limit (else what remains)), value) as the answer said."""
        gauges = self.gauges
        for kind, value in limits:
            bound = gauges.get(kind)
            if bound is None:
                resource, is_limit = kind
                group = self.stats.rate_limit if is_limit else self.stats.rate_limit_remaining
                bound = gauges[kind] = (group, rate_limit_key(self.provider, self.address, self.port,
                                                              self.request_model, resource))
            group, key = bound
            counts = group.counts
            if key in counts:
                counts[key] = value
            else:
                _set(group, key, value)


class ServerRecord:
    """The series one kind of served LLM request writes to, bound once per (operation, provider, request model,
    response model, error type, tenant), as ``ClientRecord`` is for calls made. The served side's histograms
    and response counts are written by the event loop only (no lock); cost takes the shared lock.
    """

    __slots__ = ("stats", "provider", "key", "raw_models", "series", "error_type", "responses", "tokens", "cost_key",
                 "plan")

    def __init__(self, stats: GenAiStats, operation: str, provider: str | None, request_model: str | None,
                 response_model: str | None, error_type: str | None, tenant: str | None) -> None:
        self.stats = stats
        self.provider = provider
        self.raw_models = (response_model, request_model)
        request_model, response_model = stats.models(request_model), stats.models(response_model)
        self.key = (operation, provider, request_model, response_model)
        self.series = None  # the duration series, bound on first use
        self.error_type = error_type
        self.responses: dict[str | None, tuple] = {}  # raw finish reason -> the response count's key
        self.tokens: dict[bool | None, Histogram] = {}  # None: input; else the output's estimated flag
        self.cost_key = cost_key(operation, provider, request_model, response_model, tenant)
        self.plan: Priced | None | object = PENDING if stats.prices is not None else None

    def price_plan(self) -> Priced | None | object:
        """As ``ClientRecord.price_plan``."""
        plan = self.plan
        if plan is PENDING and self.stats.prices is not None:
            plan = self.stats.prices.plan_for(self.provider, self.raw_models)
            if plan is not PENDING:
                self.plan = plan
        return plan

    def duration_series(self):  # noqa: ANN201 - the server group's Series (duration, ttft, tpot)
        series = self.series
        if series is None:
            series = self.series = self.stats.server.get(operation_key(*self.key, self.error_type))
        return series

    def count_response(self, finish_reason: str | None) -> None:
        """One served response, by its (raw) finish reason."""
        key = self.responses.get(finish_reason)
        if key is None:
            key = self.responses[finish_reason] = response_key(*self.key, self.stats.finish_reasons(finish_reason))
        self.stats.responses.add(key)

    def token_histogram(self, estimated: bool | None) -> Histogram:
        """Input tokens (``estimated`` None) or output tokens, bound on first use."""
        h = self.tokens.get(estimated)
        if h is None:
            token_type = "input" if estimated is None else "output"
            key = server_token_key(*self.key, token_type, bool(estimated), self.cost_key[-1])
            h = self.tokens[estimated] = self.stats.server_tokens.get(key).tokens
        return h


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
        self.client_records: dict[tuple, ClientRecord] = {}
        self.server_records: dict[tuple, ServerRecord] = {}
        self.lock = threading.Lock()
        self._share_lock()

    def _shared_groups(self) -> tuple[SharedHistogramGroup | SharedCounterGroup, ...]:
        return (self.client, self.client_tokens, *self.client_usage, self.retry_after, self.attempts,
                self.rate_limit_remaining, self.rate_limit, self.client_cost, self.client_unpriced_calls,
                self.client_unpriced_tokens, self.server_cost, self.server_unpriced_calls, self.server_unpriced_tokens)

    def _share_lock(self) -> None:
        """One lock for every group written from several threads: a call made takes it once, for all it adds.

        Also forgets the bound call records (their series belong to the groups as they were)."""
        self.lock = lock = threading.Lock()
        for group in self._shared_groups():
            group.lock = lock
        self.client_records = {}
        self.server_records = {}

    def client_record(self, operation: str, provider: str | None, request_model: str | None,
                      response_model: str | None, address: str | None, port: int | None, error_type: str | None,
                      tenant: str | None) -> ClientRecord:
        """The bound record of calls with these raw (uncapped) names: one dict lookup once it exists."""
        key = (operation, provider, request_model, response_model, address, port, error_type, tenant)
        found = self.client_records.get(key)
        if found is None:
            found = ClientRecord(self, *key)
            if len(self.client_records) < MAX_BOUND:
                self.client_records[key] = found
        return found

    def server_record(self, operation: str, provider: str | None, request_model: str | None,
                      response_model: str | None, error_type: str | None, tenant: str | None) -> ServerRecord:
        """The bound record of served requests with these raw names (tenant capped): one dict lookup once bound."""
        key = (operation, provider, request_model, response_model, error_type, tenant)
        found = self.server_records.get(key)
        if found is None:
            found = ServerRecord(self, *key)
            if len(self.server_records) < MAX_BOUND:
                self.server_records[key] = found
        return found

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
        self.client_records, self.server_records = {}, {}

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
        self._share_lock()

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
        self.client_records, self.server_records = {}, {}

    def reset(self) -> None:
        if self.prices is not None:
            self.prices.after_fork()
        for group in self.histogram_groups():
            group.reset()
        for group in self._counters():
            group.reset()
        self._share_lock()
