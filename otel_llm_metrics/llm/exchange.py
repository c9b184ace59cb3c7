"""The LLM record of one call, in either direction: the requested model, the response parser, the GenAI numbers.

The served side (``http/``) makes one per request that ``endpoints.endpoint_for`` recognises and
records it with ``record``; the calls made upstream (``client/``) make one per HTTP attempt and
record it with ``record_call``. Both read the same bytes the same way, with the same caps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

from .. import catalogue as c
from ..series import Histogram, SharedCounterGroup
from .bedrock import reader_for
from .endpoints import BEDROCK, Endpoint
from .parse import RequestModel, ResponseParser
from .prices import PENDING, Priced, Tokens
from .stats import (
    CallTokens,
    ClientRecord,
    GenAiStats,
    RateLimit,
)


class LlmExchange:
    __slots__ = ("endpoint", "stats", "provider", "request", "parser", "estimate", "tenant")

    def __init__(self, endpoint: Endpoint, stats: GenAiStats, provider: str | None, estimate: bool = True) -> None:
        self.endpoint = endpoint
        self.estimate = estimate
        self.stats = stats
        self.provider = provider or endpoint.provider_name
        self.request = RequestModel(endpoint.model)  # a model named in the path (Gemini) is not searched for
        self.parser: ResponseParser | None = None  # set when the response starts, dropped if it fails
        self.tenant: str | None = None  # tenant.id, already capped: the served request's, inherited by its calls

    def response_started(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Start parsing unless the body is compressed (then only timings are recorded)."""
        content_type = b""
        for name, value in headers:
            if name == b"content-type":
                content_type = value.lower()
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                return
        if self.endpoint.dialect == BEDROCK:  # JSON or AWS event-stream frames, and Bedrock's token headers
            self.parser = reader_for(self.endpoint, list(headers), self.estimate)
            return
        self.parser = ResponseParser(self.endpoint, content_type, self.estimate)

    def start_parser(self, content_type: bytes, headers: Iterable[Sequence[bytes]] = ()) -> None:
        """The answer's body is readable (not content-encoded, or shown decoded): parse it as it passes.
        ``headers``: the answer's (pairs or httpx's triples), read by Bedrock's reader for its token counts."""
        if self.endpoint.dialect == BEDROCK:
            self.parser = reader_for(self.endpoint, headers or [(b"content-type", content_type)], self.estimate)
            return
        self.parser = ResponseParser(self.endpoint, content_type, self.estimate)

    def annotate(self, span) -> None:  # noqa: ANN001 - an OTel Span
        """GenAI attributes on the server span: models, finish reason, token counts (never text)."""
        span.set_attribute(c.GEN_AI_OPERATION, self.endpoint.operation)
        span.set_attribute(c.GEN_AI_PROVIDER, self.provider)
        if self.request.model is not None:
            span.set_attribute(c.GEN_AI_REQUEST_MODEL, self.stats.models(self.request.model) or "")
        parser = self.parser
        if parser is None:
            return
        parser.finish()
        if parser.response_model is not None:
            span.set_attribute(c.GEN_AI_RESPONSE_MODEL, self.stats.models(parser.response_model) or "")
        if parser.finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", (parser.finish_reason,))
        if parser.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", parser.input_tokens)
        output = parser.output_token_count()
        if output is not None:
            span.set_attribute("gen_ai.usage.output_tokens", output)
            span.set_attribute(c.GEN_AI_ESTIMATED, parser.output_estimated)
        cache_write = "cache_write" if self.stats.latest_experimental else "cache_creation"  # v1.41's name
        for name, value in (("gen_ai.usage.cache_read.input_tokens", parser.cache_read_tokens),
                            (f"gen_ai.usage.{cache_write}.input_tokens", parser.cache_creation_tokens),
                            ("gen_ai.usage.reasoning.output_tokens", parser.reasoning_tokens)):
            if value is not None:
                span.set_attribute(name, value)

    def record(self, start: float, end: float, status: int | None, error_type: str | None, cancelled: bool,
               streamed: bool, exemplar_ids: tuple[int, int] | None = None) -> None:
        """Record the GenAI metrics of this request; ``cancelled``: the client left before the response ended.

        A client that left after the answer's last event (the OpenAI SDK closes at ``[DONE]``, before
        the server's final empty body message when the app still awaits something) had the whole
        answer: it is recorded as served, with its latencies, not as cancelled.
        """
        stats, parser = self.stats, self.parser
        response_model = None
        if parser is not None:
            parser.finish()
            if cancelled and parser.answer_ended:
                cancelled = False
            response_model = parser.response_model
        if error_type is None and status is not None and status >= 400:
            error_type = str(status)
        if error_type is None and parser is not None and parser.error_event:
            error_type = getattr(parser, "error_type", None) or c.OTHER  # Bedrock names its stream's exceptions
        record = stats.server_record(self.endpoint.operation, self.provider, self.request.model, response_model,
                                     error_type, self.tenant)
        if not cancelled:
            series = record.duration_series()
            series.duration.record(end - start)
            if exemplar_ids is not None:
                series.duration.exemplar(end - start, *exemplar_ids)
            if error_type is None and streamed and parser is not None and parser.first_token_at:
                series.time_to_first_token.record(parser.first_token_at - start)
                if exemplar_ids is not None:
                    series.time_to_first_token.exemplar(parser.first_token_at - start, *exemplar_ids)
                output = parser.output_token_count()
                if output and output > 1:
                    series.time_per_output_token.record((end - parser.first_token_at) / (output - 1))
            if error_type is None:
                record.count_response(parser.finish_reason if parser is not None else None)
        if parser is None:
            return
        if parser.input_tokens is not None:
            record.token_histogram(None).record(parser.input_tokens)
        output = parser.output_token_count()
        if output is not None:
            record.token_histogram(parser.output_estimated).record(output)
        if stats.prices is not None and error_type is None and not cancelled:
            tokens = _tokens(parser)
            plan = record.price_plan()
            if plan is PENDING:  # the table is loading: priced (or counted unpriced) once it has
                stats.prices.later(self.provider, record.raw_models,
                                   partial(_book, record.cost_key, tokens, stats.server_cost,  # type: ignore
                                           stats.server_unpriced_calls, stats.server_unpriced_tokens))
            else:
                _book(record.cost_key, tokens, stats.server_cost, stats.server_unpriced_calls,
                      stats.server_unpriced_tokens, plan)  # type: ignore[arg-type]

    def record_call(self, started: float, attempt_started: float, end: float, error_type: str | None,
                    address: str | None, port: int | None, chunk_gaps: Histogram | None,
                    duration: bool = True, count_attempt: bool = False, attempt_error: str | None = None,
                    limits: list[RateLimit] | None = None, retry_after: float | None = None) -> None:
        """Record one upstream call (an operation, from its first attempt's start) as its last attempt ended.

        ``chunk_gaps``: the time between successive chunks of generated content, gathered as they arrived.
        ``duration=False`` (a stream its reader abandoned) keeps only the tokens that were reported.
        ``count_attempt``: also count its last attempt (with ``attempt_error``, its rate-limit headers and
        retry-after), under the same lock. Everything goes through the call's bound record (``ClientRecord``):
        one dict lookup, one lock.
        """
        stats, parser = self.stats, self.parser
        response_model = None
        if parser is not None:
            parser.finish()
            if error_type is None and parser.error_event:
                error_type = getattr(parser, "error_type", None) or c.OTHER  # Bedrock names its stream's exceptions
            response_model = parser.response_model
        record = stats.client_record(self.endpoint.operation, self.provider, self.request.model, response_model,
                                     address, port, error_type, self.tenant)
        first_chunk = None
        if duration and error_type is None and parser is not None and parser.streamed_format \
                and parser.first_token_at:
            first_chunk = parser.first_token_at - attempt_started
        input_tokens = output_tokens = cost = tokens = None
        estimated = unpriced = False
        if parser is not None:
            input_tokens, output_tokens = parser.input_tokens, parser.output_tokens
            if output_tokens is None:
                estimated = parser.output_estimated
                output_tokens = parser.content_events if estimated else None
            if stats.prices is not None and error_type is None:
                tokens = _tokens(parser, output_tokens, estimated)
                plan = record.price_plan()
                if plan is PENDING:  # the table is loading: priced (or counted unpriced) once it has
                    stats.prices.later(self.provider, record.raw_models,
                                       partial(_book, record.cost_key, tokens, stats.client_cost,  # type: ignore
                                               stats.client_unpriced_calls, stats.client_unpriced_tokens))
                elif plan is not None and tokens is not None:
                    cost = plan.cost(tokens)  # type: ignore[union-attr]
                else:
                    unpriced = True
        record.record(end - started if duration else None, first_chunk, chunk_gaps, input_tokens, output_tokens,
                      estimated, cost, unpriced, tokens, count_attempt, attempt_error, limits, retry_after)
        if stats.latest_experimental and parser is not None:
            stats.record_client_tokens(record.base, error_type, call_tokens(parser), self.tenant)

    def client_record(self, error_type: str | None, address: str | None, port: int | None) -> ClientRecord:
        """The bound record this call will be recorded with (for an attempt counted before its operation ends)."""
        parser = self.parser
        response_model = None
        if parser is not None:
            parser.finish()
            if error_type is None and parser.error_event:
                error_type = getattr(parser, "error_type", None) or c.OTHER  # Bedrock names its stream's exceptions
            response_model = parser.response_model
        return self.stats.client_record(self.endpoint.operation, self.provider, self.request.model, response_model,
                                        address, port, error_type, self.tenant)


def _book(key: tuple, tokens: Tokens | None, cost: SharedCounterGroup, unpriced_calls: SharedCounterGroup,
          unpriced_tokens: SharedCounterGroup, plan: Priced | None) -> None:
    if plan is not None and tokens is not None:
        cost.add(key, plan.cost(tokens))
        return
    unpriced_calls.add(key)
    if tokens is not None:
        head, tenant = key[:-1], key[-1]
        unpriced_tokens.add((*head, "input", tenant), tokens.input)
        if tokens.output:
            unpriced_tokens.add((*head, "output", tenant), tokens.output)


def _tokens(parser: ResponseParser, output: int | None = None, estimated: bool | None = None) -> Tokens | None:
    """The usage to price, or None when the upstream reported none (or reported parts above their totals);
    ``output`` and ``estimated``: the parser's, when the caller has them already."""
    total = parser.input_tokens
    if total is None:
        return None
    if estimated is None:
        estimated, output = parser.output_estimated, parser.output_token_count()
    read, write = parser.cache_read_tokens or 0, parser.cache_creation_tokens or 0
    output = output or 0
    reasoning = 0 if estimated else parser.reasoning_tokens or 0
    if read + write > total or reasoning > output:  # Tokens.consistent(), without building them first
        return None
    return _new_tuple(Tokens, (total, read, write, output, reasoning))  # Tokens(...) without its Python __new__


_new_tuple = tuple.__new__


def call_tokens(parser: ResponseParser) -> CallTokens:
    """The usage one response reported, totals and parts as the upstream gave them."""
    return CallTokens(parser.input_tokens, parser.output_token_count(), parser.cache_read_tokens,
                      parser.cache_creation_tokens, None if parser.output_estimated else parser.reasoning_tokens,
                      parser.output_estimated)
