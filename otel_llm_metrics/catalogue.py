"""Every instrument this package publishes, in one place.

The catalogue page (docs/catalogue.md) is checked against this list by a test, and every Prometheus name listed
here is checked against a real scrape, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCOPE_NAME = "otel_llm_metrics"  # the instrumentation scope of our meter and tracer


class Kind(str, enum.Enum):
    HISTOGRAM = "histogram"
    COUNTER = "counter"
    UPDOWNCOUNTER = "updowncounter"
    GAUGE = "gauge"


class Across(str, enum.Enum):
    """How the one endpoint of a multi-worker server combines one instrument over its workers."""

    SUM = "sum"  # counters and histograms: every worker ever, dead ones included; gauges: live workers
    PER_WORKER = "per worker"  # live workers only, each labelled process_pid (process metrics, peaks)
    ONE = "one"  # the same machine-wide value in every worker (system.*, GPU): the serving worker's


# Attribute keys (semantic conventions where they exist).
METHOD = "http.request.method"
SCHEME = "url.scheme"
ROUTE = "http.route"
STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"
STREAM_OUTCOME = "http.stream.outcome"  # invented: completed | client_cancelled | timeout | error
LIMITER_NAME = "concurrency_limiter.name"  # invented
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"  # input | output
GEN_AI_TOKEN_MODALITY = "gen_ai.token.modality"  # latest experimental GenAI conventions: unknown (none reported)
GEN_AI_ESTIMATED = "gen_ai.usage.estimated"  # invented: true when counted from content deltas
GEN_AI_FINISH_REASON = "gen_ai.response.finish_reason"  # invented: one value of gen_ai.response.finish_reasons
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
RATE_LIMIT_RESOURCE = "gen_ai.rate_limit.resource"  # invented: requests | tokens | input_tokens | output_tokens
TENANT = "tenant.id"  # invented: for whom a request was served (user.id is an end user, not who is billed)

# Attribute values shared by every writer.
OTHER = "_OTHER"  # the conventions' stand-in for a value outside a bounded set
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"))
COMPLETED, CLIENT_CANCELLED, TIMEOUT, ERROR = "completed", "client_cancelled", "timeout", "error"
STREAM_OUTCOMES = (COMPLETED, CLIENT_CANCELLED, TIMEOUT, ERROR)  # values of http.stream.outcome

# Bucket boundaries. Explicit everywhere: the SDK default is millisecond-sized.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                    15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0)
FIRST_BYTE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                      5.0, 7.5, 10.0, 20.0, 30.0, 60.0)
SIZE_BUCKETS = (0.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
                16777216.0, 67108864.0)
CHUNK_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0)

# GenAI semantic conventions' boundaries.
GEN_AI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
GEN_AI_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
GEN_AI_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
                 16777216.0, 67108864.0)

_UNIT_SUFFIX = {"s": "_seconds", "By": "_bytes", "Cel": "_celsius", "W": "_watts", "USD": "_USD"}  # "1" and {...}: none


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    semconv: bool = True  # False: a name we invented because no convention exists

    @property
    def across_workers(self) -> Across:
        return across_workers(self.name, is_gauge=self.kind is Kind.GAUGE)

    @property
    def prometheus_name(self) -> str:
        """The name the OTel Prometheus exporter gives this instrument (a histogram's family name)."""
        base = self.name.replace(".", "_") + _UNIT_SUFFIX.get(self.unit, "")
        return base + "_total" if self.kind is Kind.COUNTER else base


_PER_WORKER_NAMESPACES = ("process.", "cpython.", "asyncio.")  # one process's own life
_MACHINE_NAMESPACES = ("system.", "gpu.", "hw.")  # the machine, seen alike from every worker


def across_workers(name: str, *, is_gauge: bool) -> Across:
    """By semantic-convention namespace, so other libraries' process.* and system.* fit too; otherwise
    sums add up over workers and a gauge (a peak, a utilisation) means something per worker only."""
    if name.startswith(_MACHINE_NAMESPACES):
        return Across.ONE
    if is_gauge or name.startswith(_PER_WORKER_NAMESPACES):
        return Across.PER_WORKER
    return Across.SUM


def prometheus_label(attribute: str) -> str:
    """The label name the OTel Prometheus exporter gives an attribute key."""
    return attribute.replace(".", "_")


HTTP_ATTRS = (METHOD, SCHEME, ROUTE, STATUS, ERROR_TYPE, TENANT)
STREAM_ATTRS = (METHOD, ROUTE, STREAM_OUTCOME)

REQUEST_DURATION = InstrumentSpec(
    "http.server.request.duration", Kind.HISTOGRAM, "s",
    "Duration of HTTP server requests, to the last byte of the response (streams included).",
    HTTP_ATTRS, DURATION_BUCKETS)
REQUEST_BODY_SIZE = InstrumentSpec(
    "http.server.request.body.size", Kind.HISTOGRAM, "By",
    "Size of HTTP request bodies, counted as received.", HTTP_ATTRS, SIZE_BUCKETS)
RESPONSE_BODY_SIZE = InstrumentSpec(
    "http.server.response.body.size", Kind.HISTOGRAM, "By",
    "Size of HTTP response bodies, counted as sent (right for streams with no Content-Length).",
    HTTP_ATTRS, SIZE_BUCKETS)
ACTIVE_REQUESTS = InstrumentSpec(
    "http.server.active_requests", Kind.UPDOWNCOUNTER, "{request}",
    "Requests in flight now.", (METHOD, SCHEME))
ACTIVE_REQUESTS_PEAK = InstrumentSpec(
    "http.server.active_requests.peak", Kind.GAUGE, "{request}",
    "Most requests in flight at once in one worker since it started (one series per worker).", (), semconv=False)
ROUTE_ACTIVE_REQUESTS = InstrumentSpec(
    "http.server.route.active_requests", Kind.UPDOWNCOUNTER, "{request}",
    "Requests in flight now, per route (counted from the moment the router has matched).",
    (METHOD, ROUTE), semconv=False)
ROUTE_ACTIVE_REQUESTS_PEAK = InstrumentSpec(
    "http.server.route.active_requests.peak", Kind.GAUGE, "{request}",
    "Most requests in flight at once per route in one worker since it started (one series per worker).",
    (METHOD, ROUTE), semconv=False)
STREAM_TIME_TO_FIRST_BYTE = InstrumentSpec(
    "http.server.stream.time_to_first_byte", Kind.HISTOGRAM, "s",
    "Time from the request's arrival to the first body byte of a streamed response.",
    STREAM_ATTRS, FIRST_BYTE_BUCKETS, semconv=False)
STREAM_DURATION = InstrumentSpec(
    "http.server.stream.duration", Kind.HISTOGRAM, "s",
    "Whole life of a streamed response, from the request's arrival to its last chunk or its end.",
    STREAM_ATTRS, DURATION_BUCKETS, semconv=False)
STREAM_CHUNKS = InstrumentSpec(
    "http.server.stream.chunks", Kind.HISTOGRAM, "{chunk}",
    "Non-empty body messages sent per streamed response.", STREAM_ATTRS, CHUNK_BUCKETS, semconv=False)
STREAM_BODY_SIZE = InstrumentSpec(
    "http.server.stream.body.size", Kind.HISTOGRAM, "By",
    "Bytes sent per streamed response.", STREAM_ATTRS, SIZE_BUCKETS, semconv=False)
STREAMS = InstrumentSpec(
    "http.server.streams", Kind.COUNTER, "{stream}",
    "Streamed responses by how they ended: completed, client_cancelled, timeout, error.",
    STREAM_ATTRS, semconv=False)
LIMITER_WAITING = InstrumentSpec(
    "concurrency_limiter.waiting_requests", Kind.UPDOWNCOUNTER, "{request}",
    "Callers queued at a ConcurrencyLimiter, waiting for a slot.", (LIMITER_NAME,), semconv=False)
LIMITER_ACTIVE = InstrumentSpec(
    "concurrency_limiter.active_requests", Kind.UPDOWNCOUNTER, "{request}",
    "Callers holding a ConcurrencyLimiter slot.", (LIMITER_NAME,), semconv=False)
LIMITER_LIMIT = InstrumentSpec(
    "concurrency_limiter.limit", Kind.GAUGE, "{request}",
    "Slots a ConcurrencyLimiter has.", (LIMITER_NAME,), semconv=False)
LIMITER_WAIT_TIME = InstrumentSpec(
    "concurrency_limiter.wait_time", Kind.HISTOGRAM, "s",
    "Time a caller waited for a ConcurrencyLimiter slot (0 when one was free).",
    (LIMITER_NAME,), WAIT_BUCKETS, semconv=False)

GEN_AI_ATTRS = (GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, ERROR_TYPE)
GEN_AI_TOKEN_ATTRS = (GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL,
                      GEN_AI_TOKEN_TYPE, GEN_AI_ESTIMATED, TENANT)
GEN_AI_RESPONSE_ATTRS = (GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL,
                         GEN_AI_FINISH_REASON)
GEN_AI_SERVER_DURATION = InstrumentSpec(
    "gen_ai.server.request.duration", Kind.HISTOGRAM, "s",
    "LLM request duration as this app served it, to the last byte or output token.",
    GEN_AI_ATTRS, GEN_AI_DURATION_BUCKETS)
GEN_AI_SERVER_TTFT = InstrumentSpec(
    "gen_ai.server.time_to_first_token", Kind.HISTOGRAM, "s",
    "Time from the request's arrival to the first chunk carrying generated content (streams).",
    GEN_AI_ATTRS, GEN_AI_TTFT_BUCKETS)
GEN_AI_SERVER_TPOT = InstrumentSpec(
    "gen_ai.server.time_per_output_token", Kind.HISTOGRAM, "s",
    "Time per output token after the first, for successful streams.", GEN_AI_ATTRS, GEN_AI_TPOT_BUCKETS)
GEN_AI_SERVER_TOKENS = InstrumentSpec(
    "gen_ai.server.token.usage", Kind.HISTOGRAM, "{token}",
    "Tokens per request this app served, by gen_ai.token.type (input with cached tokens, output with reasoning "
    "tokens); gen_ai.usage.estimated=true when the upstream reported no usage and output tokens were counted "
    "from content deltas.",
    GEN_AI_TOKEN_ATTRS, TOKEN_BUCKETS, semconv=False)
GEN_AI_SERVER_RESPONSES = InstrumentSpec(
    "gen_ai.server.responses", Kind.COUNTER, "{response}",
    "LLM responses served to the end (not abandoned), by gen_ai.response.finish_reason as the upstream "
    "gave it: stop, length, tool_calls, content_filter, end_turn, max_tokens, ... (bounded like model names).",
    GEN_AI_RESPONSE_ATTRS, semconv=False)
GEN_AI_CLIENT_ATTRS = (GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL,
                       SERVER_ADDRESS, SERVER_PORT, ERROR_TYPE)
GEN_AI_CLIENT_DURATION = InstrumentSpec(
    "gen_ai.client.operation.duration", Kind.HISTOGRAM, "s",
    "LLM calls this app made upstream, measured at its HTTP client: from the first attempt to the end of the "
    "last one's body (retries included). From gen_ai client spans when OTEL_LLM_METRICS_UPSTREAM_CALLS=false.",
    GEN_AI_CLIENT_ATTRS, GEN_AI_DURATION_BUCKETS)
GEN_AI_CLIENT_TTFC = InstrumentSpec(
    "gen_ai.client.operation.time_to_first_chunk", Kind.HISTOGRAM, "s",
    "Streamed upstream calls: from sending the attempt that succeeded to its first chunk of generated content.",
    GEN_AI_CLIENT_ATTRS, GEN_AI_DURATION_BUCKETS)  # the conventions' advice (v1.41), not the server TTFT's
GEN_AI_CLIENT_TPOC = InstrumentSpec(
    "gen_ai.client.operation.time_per_output_chunk", Kind.HISTOGRAM, "s",
    "Streamed upstream calls: for each body chunk with generated content after the first, the time since the "
    "previous one.", GEN_AI_CLIENT_ATTRS, GEN_AI_DURATION_BUCKETS)
GEN_AI_CLIENT_TOKENS = InstrumentSpec(
    "gen_ai.client.token.usage", Kind.HISTOGRAM, "{token}",
    "Tokens per upstream LLM call, as the provider reported them, by gen_ai.token.type (input with cached "
    "tokens, output with reasoning tokens); from gen_ai client spans when OTEL_LLM_METRICS_UPSTREAM_CALLS=false.",
    GEN_AI_TOKEN_ATTRS[:4] + (SERVER_ADDRESS, SERVER_PORT) + GEN_AI_TOKEN_ATTRS[4:], TOKEN_BUCKETS)
GEN_AI_CLIENT_ATTEMPTS = InstrumentSpec(
    "gen_ai.client.attempts", Kind.COUNTER, "{attempt}",
    "HTTP attempts of upstream LLM calls, retries included (an operation retried once is 2 attempts), by "
    "error.type: the HTTP status (429, 500, 529...), timeout, connection_error, _OTHER for an error inside a "
    "200 answer, abandoned when the caller closed a stream early.",
    (GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_REQUEST_MODEL, SERVER_ADDRESS, SERVER_PORT, ERROR_TYPE),
    semconv=False)
GEN_AI_CLIENT_RETRY_AFTER = InstrumentSpec(
    "gen_ai.client.retry_after", Kind.HISTOGRAM, "s",
    "The retry-after the provider asked for, per answer that carried one.",
    (GEN_AI_PROVIDER, SERVER_ADDRESS, SERVER_PORT), WAIT_BUCKETS, semconv=False)
_RATE_LIMIT_ATTRS = (GEN_AI_PROVIDER, SERVER_ADDRESS, SERVER_PORT, GEN_AI_REQUEST_MODEL, RATE_LIMIT_RESOURCE)
GEN_AI_CLIENT_RATE_LIMIT_REMAINING = InstrumentSpec(
    "gen_ai.client.rate_limit.remaining", Kind.GAUGE, "1",
    "What the provider's last answer said is left of a rate limit (x-ratelimit-remaining-*, "
    "anthropic-ratelimit-*-remaining), by gen_ai.rate_limit.resource: requests, tokens, input_tokens, "
    "output_tokens.", _RATE_LIMIT_ATTRS, semconv=False)
GEN_AI_CLIENT_RATE_LIMIT = InstrumentSpec(
    "gen_ai.client.rate_limit.limit", Kind.GAUGE, "1",
    "The provider's rate limit as its last answer stated it (x-ratelimit-limit-*, anthropic-ratelimit-*-limit).",
    _RATE_LIMIT_ATTRS, semconv=False)
UPSTREAM_OVERHEAD = InstrumentSpec(
    "http.server.request.upstream_overhead", Kind.HISTOGRAM, "s",
    "For requests that made upstream LLM calls: the served duration minus the time spent waiting on those "
    "calls (overlapping calls counted once): the app's own share.", (METHOD, ROUTE), DURATION_BUCKETS,
    semconv=False)
FIRST_TOKEN_OVERHEAD = InstrumentSpec(
    "http.server.request.first_token_overhead", Kind.HISTOGRAM, "s",
    "Relayed LLM streams: the served time to first token minus the first upstream call's time to first chunk: "
    "what the app adds before its first token.", (METHOD, ROUTE), FIRST_BYTE_BUCKETS, semconv=False)

GEN_AI_COST_ATTRS = (GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, TENANT)
GEN_AI_CLIENT_COST_ATTRS = GEN_AI_COST_ATTRS[:4] + (SERVER_ADDRESS, TENANT)
GEN_AI_CLIENT_COST = InstrumentSpec(
    "gen_ai.client.cost", Kind.COUNTER, "USD",
    "What the LLM calls this app made cost, in US dollars, from genai-prices' table or the overrides file "
    "(the app's spend: sum this one).", GEN_AI_CLIENT_COST_ATTRS, semconv=False)
GEN_AI_CLIENT_UNPRICED_CALLS = InstrumentSpec(
    "gen_ai.client.cost.unpriced.calls", Kind.COUNTER, "{call}",
    "Successful LLM calls made whose cost is unknown: no price for the model, or no usage reported.",
    GEN_AI_CLIENT_COST_ATTRS, semconv=False)
GEN_AI_CLIENT_UNPRICED_TOKENS = InstrumentSpec(
    "gen_ai.client.cost.unpriced.tokens", Kind.COUNTER, "{token}",
    "Tokens of LLM calls made whose model has no price, by type.",
    GEN_AI_CLIENT_COST_ATTRS[:5] + (GEN_AI_TOKEN_TYPE, TENANT), semconv=False)
GEN_AI_SERVER_COST = InstrumentSpec(
    "gen_ai.server.cost", Kind.COUNTER, "USD",
    "What the LLM responses this app served would cost at the model's price, in US dollars (what a proxy "
    "passes on; never add it to gen_ai.client.cost).", GEN_AI_COST_ATTRS, semconv=False)
GEN_AI_SERVER_UNPRICED_CALLS = InstrumentSpec(
    "gen_ai.server.cost.unpriced.calls", Kind.COUNTER, "{call}",
    "Successful LLM responses served whose cost is unknown: no price for the model, or no usage reported.",
    GEN_AI_COST_ATTRS, semconv=False)
GEN_AI_SERVER_UNPRICED_TOKENS = InstrumentSpec(
    "gen_ai.server.cost.unpriced.tokens", Kind.COUNTER, "{token}",
    "Tokens of LLM responses served whose model has no price, by type.",
    GEN_AI_COST_ATTRS[:4] + (GEN_AI_TOKEN_TYPE, TENANT), semconv=False)
COST_SPECS = (GEN_AI_CLIENT_COST, GEN_AI_CLIENT_UNPRICED_CALLS, GEN_AI_CLIENT_UNPRICED_TOKENS,
              GEN_AI_SERVER_COST, GEN_AI_SERVER_UNPRICED_CALLS, GEN_AI_SERVER_UNPRICED_TOKENS)

# -- the GenAI repository's latest experimental names: OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental ---
# They replace the calls-made duration, chunk timings and token histogram above (the latest released conventions,
# v1.41, the default). The served side has no newer names.
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
GEN_AI_LATEST_EXPERIMENTAL = "gen_ai_latest_experimental"


def gen_ai_latest_experimental(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard opt-in asks for the GenAI repository's newest names (read as the OTel GenAI
    instrumentations read it: a comma-separated list)."""
    return GEN_AI_LATEST_EXPERIMENTAL in {part.strip() for part in environ.get(SEMCONV_OPT_IN, "").split(",")}


GEN_AI_CLIENT_INFERENCE_DURATION = InstrumentSpec(
    "gen_ai.client.inference.duration", Kind.HISTOGRAM, "s",
    "Replaces gen_ai.client.operation.duration under the opt-in: LLM calls this app made upstream, first attempt "
    "to the end of the last one's body.", GEN_AI_CLIENT_ATTRS, GEN_AI_DURATION_BUCKETS)
GEN_AI_CLIENT_INFERENCE_TTFC = InstrumentSpec(
    "gen_ai.client.inference.time_to_first_chunk", Kind.HISTOGRAM, "s",
    "Replaces gen_ai.client.operation.time_to_first_chunk under the opt-in.", GEN_AI_CLIENT_ATTRS,
    GEN_AI_DURATION_BUCKETS)
GEN_AI_CLIENT_INFERENCE_TPOC = InstrumentSpec(
    "gen_ai.client.inference.time_per_output_chunk", Kind.HISTOGRAM, "s",
    "Replaces gen_ai.client.operation.time_per_output_chunk under the opt-in.", GEN_AI_CLIENT_ATTRS,
    GEN_AI_DURATION_BUCKETS)
_USAGE_ATTRS = GEN_AI_CLIENT_ATTRS[:6] + (GEN_AI_TOKEN_MODALITY, TENANT)


def _usage(name: str, description: str, attributes: tuple[str, ...] = _USAGE_ATTRS) -> InstrumentSpec:
    return InstrumentSpec(name, Kind.COUNTER, "{token}", description, attributes)


GEN_AI_CLIENT_USAGE_INPUT = _usage(
    "gen_ai.client.inference.usage.input_tokens",
    "Input tokens of the calls made, cached ones included (with the cache and reasoning counters below, replaces "
    "gen_ai.client.token.usage under the opt-in); 0 with gen_ai.token.modality=unknown when a call reported none.")
GEN_AI_CLIENT_USAGE_OUTPUT = _usage(
    "gen_ai.client.inference.usage.output_tokens",
    "Output tokens of the calls made, reasoning included; gen_ai.usage.estimated=true when counted from content.",
    _USAGE_ATTRS[:7] + (GEN_AI_ESTIMATED, TENANT))
GEN_AI_CLIENT_USAGE_CACHE_READ = _usage(
    "gen_ai.client.inference.usage.cache_read.input_tokens", "Input tokens served from the provider's cache.")
GEN_AI_CLIENT_USAGE_CACHE_WRITE = _usage(
    "gen_ai.client.inference.usage.cache_write.input_tokens", "Input tokens written to the provider's cache.")
GEN_AI_CLIENT_USAGE_REASONING = _usage(
    "gen_ai.client.inference.usage.reasoning.output_tokens", "Output tokens the model used for reasoning.")
_OPERATION_TOKEN_ATTRS = GEN_AI_CLIENT_ATTRS + (TENANT,)
GEN_AI_CLIENT_OPERATION_INPUT_TOKENS = InstrumentSpec(
    "gen_ai.client.inference.operation.input_tokens", Kind.HISTOGRAM, "{token}",
    "Input tokens per call made (0 when a call reported none).", _OPERATION_TOKEN_ATTRS, TOKEN_BUCKETS)
GEN_AI_CLIENT_OPERATION_OUTPUT_TOKENS = InstrumentSpec(
    "gen_ai.client.inference.operation.output_tokens", Kind.HISTOGRAM, "{token}",
    "Output tokens per call made (0 when a call reported none).", _OPERATION_TOKEN_ATTRS, TOKEN_BUCKETS)
GEN_AI_CLIENT_USAGE_SPECS = (GEN_AI_CLIENT_USAGE_INPUT, GEN_AI_CLIENT_USAGE_OUTPUT, GEN_AI_CLIENT_USAGE_CACHE_READ,
                             GEN_AI_CLIENT_USAGE_CACHE_WRITE, GEN_AI_CLIENT_USAGE_REASONING)
LATEST_EXPERIMENTAL: tuple[InstrumentSpec, ...] = (
    GEN_AI_CLIENT_INFERENCE_DURATION, GEN_AI_CLIENT_INFERENCE_TTFC, GEN_AI_CLIENT_INFERENCE_TPOC,
    *GEN_AI_CLIENT_USAGE_SPECS, GEN_AI_CLIENT_OPERATION_INPUT_TOKENS, GEN_AI_CLIENT_OPERATION_OUTPUT_TOKENS)
REPLACED_UNDER_OPT_IN = (GEN_AI_CLIENT_DURATION, GEN_AI_CLIENT_TTFC, GEN_AI_CLIENT_TPOC, GEN_AI_CLIENT_TOKENS)

# -- resources (issue: process/system, event loop, pools, caches) --------------------------------
CPU_MODE = "cpu.mode"
POOL_NAME = "db.client.connection.pool.name"
POOL_STATE = "db.client.connection.state"
CACHE_NAME = "cache.name"  # invented
CACHE_OPERATION = "cache.operation"  # invented
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
POOL_TIME_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CACHE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _spec(name: str, kind: Kind, unit: str, description: str, attributes: tuple[str, ...] = (),
          buckets: tuple[float, ...] = (), semconv: bool = True) -> InstrumentSpec:
    return InstrumentSpec(name, kind, unit, description, attributes, buckets, semconv)


PROCESS_CPU_TIME = _spec("process.cpu.time", Kind.COUNTER, "s", "CPU seconds used by this process.", (CPU_MODE,))
PROCESS_CPU_UTILIZATION = _spec("process.cpu.utilization", Kind.GAUGE, "1",
                                "CPU used since the last collection / (elapsed time x CPUs), by mode.", (CPU_MODE,))
PROCESS_MEMORY_USAGE = _spec("process.memory.usage", Kind.UPDOWNCOUNTER, "By", "Resident memory (RSS).")
PROCESS_MEMORY_VIRTUAL = _spec("process.memory.virtual", Kind.UPDOWNCOUNTER, "By", "Virtual memory.")
PROCESS_THREADS = _spec("process.thread.count", Kind.UPDOWNCOUNTER, "{thread}", "Threads of this process.")
PROCESS_FDS = _spec("process.unix.file_descriptor.count", Kind.UPDOWNCOUNTER, "{file_descriptor}",
                    "Open file descriptors.")
PROCESS_CONTEXT_SWITCHES = _spec("process.context_switches", Kind.COUNTER, "{context_switch}",
                                 "Context switches, by process.context_switch.type.",
                                 ("process.context_switch.type",))
PROCESS_UPTIME = _spec("process.uptime", Kind.GAUGE, "s", "Seconds since the process started.")
GC_COLLECTIONS = _spec("cpython.gc.collections", Kind.COUNTER, "{collection}",
                       "Garbage collector runs, by generation.", ("cpython.gc.generation",))
GC_COLLECTED = _spec("cpython.gc.collected_objects", Kind.COUNTER, "{object}",
                     "Objects the garbage collector freed, by generation.", ("cpython.gc.generation",))
GC_UNCOLLECTABLE = _spec("cpython.gc.uncollectable_objects", Kind.COUNTER, "{object}",
                         "Objects the garbage collector found uncollectable, by generation.",
                         ("cpython.gc.generation",))
SYSTEM_CPU_UTILIZATION = _spec("system.cpu.utilization", Kind.GAUGE, "1",
                               "Share of all CPUs' time since the last collection, by mode.", (CPU_MODE,))
SYSTEM_MEMORY_USAGE = _spec("system.memory.usage", Kind.UPDOWNCOUNTER, "By", "Memory by state.",
                            ("system.memory.state",))
SYSTEM_MEMORY_UTILIZATION = _spec("system.memory.utilization", Kind.GAUGE, "1", "Share of memory by state.",
                                  ("system.memory.state",))
SYSTEM_DISK_IO = _spec("system.disk.io", Kind.COUNTER, "By", "Disk bytes read and written.",
                       ("system.device", "disk.io.direction"))
SYSTEM_NETWORK_IO = _spec("system.network.io", Kind.COUNTER, "By", "Network bytes received and sent.",
                          ("network.interface.name", "network.io.direction"))
SYSTEM_FILESYSTEM_USAGE = _spec("system.filesystem.usage", Kind.UPDOWNCOUNTER, "By", "Filesystem bytes by state.",
                                ("system.device", "system.filesystem.mountpoint", "system.filesystem.type",
                                 "system.filesystem.state"))
LOOP_LAG = _spec("asyncio.event_loop.lag", Kind.HISTOGRAM, "s",
                 "How late the event loop ran a callback scheduled to the interval (blocking code shows here).",
                 (), LAG_BUCKETS, semconv=False)
POOL_COUNT = _spec("db.client.connection.count", Kind.UPDOWNCOUNTER, "{connection}",
                   "Connections in the pool, by db.client.connection.state (idle, used).", (POOL_NAME, POOL_STATE))
POOL_MAX = _spec("db.client.connection.max", Kind.UPDOWNCOUNTER, "{connection}",
                 "Most connections the pool allows.", (POOL_NAME,))
POOL_IDLE_MAX = _spec("db.client.connection.idle.max", Kind.UPDOWNCOUNTER, "{connection}",
                      "Most idle connections the pool keeps.", (POOL_NAME,))
POOL_IDLE_MIN = _spec("db.client.connection.idle.min", Kind.UPDOWNCOUNTER, "{connection}",
                      "Fewest idle connections the pool keeps.", (POOL_NAME,))
POOL_PENDING = _spec("db.client.connection.pending_requests", Kind.UPDOWNCOUNTER, "{request}",
                     "Callers waiting for a connection.", (POOL_NAME,))
POOL_TIMEOUTS = _spec("db.client.connection.timeouts", Kind.COUNTER, "{timeout}",
                      "Requests for a connection that timed out.", (POOL_NAME,))
POOL_WAIT_TIME = _spec("db.client.connection.wait_time", Kind.HISTOGRAM, "s",
                       "Time to obtain a connection from the pool.", (POOL_NAME,), POOL_TIME_BUCKETS)
POOL_USE_TIME = _spec("db.client.connection.use_time", Kind.HISTOGRAM, "s",
                      "Time between borrowing a connection and returning it.", (POOL_NAME,), POOL_TIME_BUCKETS)
CACHE_HITS = _spec("cache.hits", Kind.COUNTER, "{request}", "Lookups that found a value.", (CACHE_NAME,),
                   semconv=False)
CACHE_MISSES = _spec("cache.misses", Kind.COUNTER, "{request}", "Lookups that found nothing.", (CACHE_NAME,),
                     semconv=False)
CACHE_SETS = _spec("cache.sets", Kind.COUNTER, "{request}", "Values stored.", (CACHE_NAME,), semconv=False)
CACHE_DELETES = _spec("cache.deletes", Kind.COUNTER, "{request}", "Values deleted.", (CACHE_NAME,), semconv=False)
CACHE_ERRORS = _spec("cache.errors", Kind.COUNTER, "{request}", "Cache operations that failed.", (CACHE_NAME,),
                     semconv=False)
CACHE_DURATION = _spec("cache.operation.duration", Kind.HISTOGRAM, "s", "Cache operation latency.",
                       (CACHE_NAME, CACHE_OPERATION), CACHE_BUCKETS, semconv=False)
# GPUs: the hardware conventions (hw.gpu.*, hw.power, hw.temperature), one hw.id per GPU.
HW_ID = "hw.id"
GPU_UTILIZATION = _spec("hw.gpu.utilization", Kind.GAUGE, "1",
                        "Fraction of time the GPU was busy (NVML, hw.gpu.task=general); only with a GPU.",
                        (HW_ID, "hw.name", "hw.gpu.task"))
GPU_MEMORY_USAGE = _spec("hw.gpu.memory.usage", Kind.UPDOWNCOUNTER, "By", "GPU memory used (NVML).",
                         (HW_ID, "hw.name"))
GPU_MEMORY_LIMIT = _spec("hw.gpu.memory.limit", Kind.UPDOWNCOUNTER, "By", "Size of the GPU memory (NVML).",
                         (HW_ID, "hw.name"))
GPU_TEMPERATURE = _spec("hw.temperature", Kind.GAUGE, "Cel", "GPU temperature (NVML, hw.sensor_location=gpu).",
                        (HW_ID, "hw.name", "hw.sensor_location"))
GPU_POWER = _spec("hw.power", Kind.GAUGE, "W", "GPU power draw (NVML, hw.type=gpu).", (HW_ID, "hw.name", "hw.type"))

# -- MCP (issue 29): the GenAI conventions' model/mcp metrics, served (middleware) and made (httpx hook) ----------
MCP_METHOD = "mcp.method.name"
MCP_PROTOCOL_VERSION = "mcp.protocol.version"
MCP_RESOURCE_URI = "mcp.resource.uri"  # opt-in (OTEL_LLM_METRICS_MCP_RESOURCE_URI): URIs have no bound
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_PROMPT_NAME = "gen_ai.prompt.name"
RPC_STATUS = "rpc.response.status_code"  # the JSON-RPC error code, as a string
NETWORK_TRANSPORT = "network.transport"
NETWORK_PROTOCOL_NAME = "network.protocol.name"
NETWORK_PROTOCOL_VERSION = "network.protocol.version"
# Tool calls run from a millisecond (tools/list) to minutes (a tool that calls an LLM).
MCP_OPERATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                         120.0, 300.0)
MCP_SESSION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
                       86400.0)
MCP_OPERATION_ATTRS = (MCP_METHOD, GEN_AI_TOOL_NAME, GEN_AI_PROMPT_NAME, GEN_AI_OPERATION, ERROR_TYPE, RPC_STATUS,
                       MCP_PROTOCOL_VERSION, NETWORK_TRANSPORT, NETWORK_PROTOCOL_NAME, NETWORK_PROTOCOL_VERSION,
                       MCP_RESOURCE_URI)
MCP_SESSION_ATTRS = (MCP_PROTOCOL_VERSION, NETWORK_PROTOCOL_NAME, ERROR_TYPE)
MCP_SERVER_OPERATION_DURATION = InstrumentSpec(
    "mcp.server.operation.duration", Kind.HISTOGRAM, "s",
    "MCP requests and notifications this app served, from the request's arrival to its JSON-RPC response (the "
    "response event of an SSE answer, not the stream's end) or the acknowledgement of a notification. error.type: "
    "the JSON-RPC code (not for the caller's mistakes -32700, -32600, -32601, -32602, -32002), tool_error for a "
    "tool result with isError.", MCP_OPERATION_ATTRS, MCP_OPERATION_BUCKETS)
MCP_CLIENT_OPERATION_DURATION = InstrumentSpec(
    "mcp.client.operation.duration", Kind.HISTOGRAM, "s",
    "MCP requests and notifications this app sent over httpx/httpx2, from sending to the JSON-RPC response or the "
    "acknowledgement; every JSON-RPC error code is an error.type here, tool_error for a tool result with isError.",
    MCP_OPERATION_ATTRS + (SERVER_ADDRESS, SERVER_PORT), MCP_OPERATION_BUCKETS)
MCP_SERVER_SESSION_DURATION = InstrumentSpec(
    "mcp.server.session.duration", Kind.HISTOGRAM, "s",
    "MCP sessions served (Mcp-Session-Id), from initialize to their DELETE, or to their last request when idle "
    "past OTEL_LLM_METRICS_MCP_SESSION_IDLE_TIMEOUT.", MCP_SESSION_ATTRS, MCP_SESSION_BUCKETS)
MCP_CLIENT_SESSION_DURATION = InstrumentSpec(
    "mcp.client.session.duration", Kind.HISTOGRAM, "s",
    "MCP sessions this app held with servers, from initialize to their DELETE, or to their last request when idle "
    "past OTEL_LLM_METRICS_MCP_SESSION_IDLE_TIMEOUT.", MCP_SESSION_ATTRS + (SERVER_ADDRESS, SERVER_PORT),
    MCP_SESSION_BUCKETS)
MCP_SERVER_SESSIONS = InstrumentSpec(
    "mcp.server.session.active", Kind.UPDOWNCOUNTER, "{session}",
    "MCP sessions open now on this server (initialized, neither deleted nor idle past the timeout).",
    (MCP_PROTOCOL_VERSION,), semconv=False)
MCP_CLIENT_SESSIONS = InstrumentSpec(
    "mcp.client.session.active", Kind.UPDOWNCOUNTER, "{session}",
    "MCP sessions this app holds open with servers now.", (MCP_PROTOCOL_VERSION, SERVER_ADDRESS, SERVER_PORT),
    semconv=False)
MCP_SPECS = (MCP_SERVER_OPERATION_DURATION, MCP_CLIENT_OPERATION_DURATION, MCP_SERVER_SESSION_DURATION,
             MCP_CLIENT_SESSION_DURATION, MCP_SERVER_SESSIONS, MCP_CLIENT_SESSIONS)


CALLS_MADE_SPECS = (GEN_AI_CLIENT_DURATION, GEN_AI_CLIENT_TTFC, GEN_AI_CLIENT_TPOC, GEN_AI_CLIENT_TOKENS,
                    GEN_AI_CLIENT_ATTEMPTS, GEN_AI_CLIENT_RETRY_AFTER, GEN_AI_CLIENT_RATE_LIMIT_REMAINING,
                    GEN_AI_CLIENT_RATE_LIMIT, UPSTREAM_OVERHEAD, FIRST_TOKEN_OVERHEAD)
PROCESS_SPECS = (PROCESS_CPU_TIME, PROCESS_CPU_UTILIZATION, PROCESS_MEMORY_USAGE, PROCESS_MEMORY_VIRTUAL,
                 PROCESS_THREADS, PROCESS_FDS, PROCESS_CONTEXT_SWITCHES, PROCESS_UPTIME, GC_COLLECTIONS,
                 GC_COLLECTED, GC_UNCOLLECTABLE)
SYSTEM_SPECS = (SYSTEM_CPU_UTILIZATION, SYSTEM_MEMORY_USAGE, SYSTEM_MEMORY_UTILIZATION, SYSTEM_DISK_IO,
                SYSTEM_NETWORK_IO, SYSTEM_FILESYSTEM_USAGE)
POOL_SPECS = (POOL_COUNT, POOL_MAX, POOL_IDLE_MAX, POOL_IDLE_MIN, POOL_PENDING, POOL_TIMEOUTS, POOL_WAIT_TIME,
              POOL_USE_TIME)
CACHE_SPECS = (CACHE_HITS, CACHE_MISSES, CACHE_SETS, CACHE_DELETES, CACHE_ERRORS, CACHE_DURATION)
GPU_SPECS = (GPU_UTILIZATION, GPU_MEMORY_USAGE, GPU_MEMORY_LIMIT, GPU_TEMPERATURE, GPU_POWER)

ALL: tuple[InstrumentSpec, ...] = (
    REQUEST_DURATION, REQUEST_BODY_SIZE, RESPONSE_BODY_SIZE,
    ACTIVE_REQUESTS, ACTIVE_REQUESTS_PEAK, ROUTE_ACTIVE_REQUESTS, ROUTE_ACTIVE_REQUESTS_PEAK,
    STREAM_TIME_TO_FIRST_BYTE, STREAM_DURATION, STREAM_CHUNKS, STREAM_BODY_SIZE, STREAMS,
    LIMITER_WAITING, LIMITER_ACTIVE, LIMITER_LIMIT, LIMITER_WAIT_TIME,
    GEN_AI_SERVER_DURATION, GEN_AI_SERVER_TTFT, GEN_AI_SERVER_TPOT, GEN_AI_SERVER_TOKENS, GEN_AI_SERVER_RESPONSES,
    GEN_AI_CLIENT_DURATION, GEN_AI_CLIENT_TTFC, GEN_AI_CLIENT_TPOC, GEN_AI_CLIENT_TOKENS, GEN_AI_CLIENT_ATTEMPTS,
    GEN_AI_CLIENT_RETRY_AFTER, GEN_AI_CLIENT_RATE_LIMIT_REMAINING, GEN_AI_CLIENT_RATE_LIMIT,
    UPSTREAM_OVERHEAD, FIRST_TOKEN_OVERHEAD, *COST_SPECS,
    *PROCESS_SPECS, *SYSTEM_SPECS, LOOP_LAG, *POOL_SPECS, *CACHE_SPECS, *GPU_SPECS,
    *MCP_SPECS,
)


def published(latest_experimental: bool) -> tuple[InstrumentSpec, ...]:
    """Every instrument this package may publish, under the released GenAI conventions or the opt-in's."""
    if not latest_experimental:
        return ALL
    return tuple(spec for spec in ALL if spec not in REPLACED_UNDER_OPT_IN) + LATEST_EXPERIMENTAL


def observe(meter: Any, spec: InstrumentSpec, callback: Callable[..., Any]) -> None:
    """Create the observable instrument ``spec`` describes on ``meter`` (callbacks run at collection)."""
    create = {Kind.COUNTER: meter.create_observable_counter, Kind.GAUGE: meter.create_observable_gauge,
              Kind.UPDOWNCOUNTER: meter.create_observable_up_down_counter}[spec.kind]
    create(spec.name, callbacks=[callback], unit=spec.unit, description=spec.description)


def markdown_table(specs: Sequence[InstrumentSpec] = ALL) -> str:
    """The catalogue (or the opt-in's names) as the Markdown table docs/catalogue.md carries."""
    rows = ["| OTel name | Prometheus name | type | unit | attributes | across workers | meaning |",
            "|---|---|---|---|---|---|---|"]
    for spec in specs:
        name = f"`{spec.name}`" + ("" if spec.semconv else " *")
        attrs = ", ".join(f"`{a}`" for a in spec.attributes) or "-"
        rows.append(f"| {name} | `{spec.prometheus_name}` | {spec.kind.value} | `{spec.unit}` | {attrs} "
                    f"| {spec.across_workers.value} | {spec.description} |")
    return "\n".join(rows)
