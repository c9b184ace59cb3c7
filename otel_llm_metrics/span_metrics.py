"""Metrics from spans, derived one span at a time as each ends: O(1) time and memory per span.

- ``gen_ai.*`` client spans from other instrumentations (opentelemetry-instrumentation-openai-v2,
  OpenLLMetry, OpenLIT) become ``gen_ai.client.operation.duration`` and
  ``gen_ai.client.token.usage`` when the calls are not measured at the HTTP client
  (``OTEL_LLM_METRICS_UPSTREAM_CALLS=false``): one source per call. Spans of instrumentations whose own
  metrics are kept (botocore's Bedrock calls: ``frameworks.COPYING_SCOPES`` does not list it) are left alone.
- SERVER spans of frameworks our middleware does not wrap (Flask, Django: WSGI) become
  ``http.server.request.duration``, so tracing users get RED metrics there too. Server spans of
  ASGI instrumentations are skipped while our middleware measures this process's requests, so no
  request is counted twice.

Nothing is buffered and no lookup grows: each span is read, recorded and forgotten.
"""

from __future__ import annotations

import logging

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from . import catalogue as c
from .frameworks import OTHER_HTTP_SERVER_SCOPES
from .http.stats import request_key
from .llm.parse import MAX_TOKENS
from .llm.stats import CallTokens, client_key
from .registry import DEFAULT_REGISTRY, Registry

logger = logging.getLogger(__name__)
_ASGI_SCOPES = frozenset(OTHER_HTTP_SERVER_SCOPES)
_INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
_CACHE_WRITE_KEYS = ("gen_ai.usage.cache_write.input_tokens", "gen_ai.usage.cache_creation.input_tokens")
_OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")


# Instrumentations whose own gen_ai.client.* metrics are kept (frameworks.COPYING_SCOPES does not list them):
# their spans are not turned into ours as well, or each of their calls would count twice.
_OWN_NUMBERS_KEPT = ("opentelemetry.instrumentation.botocore",)


def _keeps_its_own_numbers(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return scope is not None and scope.name.startswith(_OWN_NUMBERS_KEPT)


class SpanMetricsProcessor(SpanProcessor):
    """Add to any SDK TracerProvider: ``provider.add_span_processor(SpanMetricsProcessor())``."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or DEFAULT_REGISTRY
        self._logged = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            attributes = span.attributes
            if not attributes:
                return
            if "gen_ai.operation.name" in attributes:
                if (span.kind is not SpanKind.SERVER and not self.registry.gen_ai.measured_at_the_wire
                        and not _keeps_its_own_numbers(span)):
                    self._gen_ai_client(span, attributes)
            elif span.kind is SpanKind.SERVER:
                self._http_server(span, attributes)
        except Exception:  # never into the tracing pipeline
            if not self._logged:
                self._logged = True
                logger.exception("otel_llm_metrics could not derive metrics from a span")

    def _gen_ai_client(self, span: ReadableSpan, attributes) -> None:
        stats = self.registry.gen_ai
        operation = str(attributes["gen_ai.operation.name"])[:64]
        provider = attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system")
        provider = str(provider)[:64] if provider is not None else None
        request_model = stats.models(_str(attributes.get("gen_ai.request.model")))
        response_model = stats.models(_str(attributes.get("gen_ai.response.model")))
        error_type = attributes.get("error.type")
        if error_type is None and span.status.status_code is StatusCode.ERROR:
            error_type = c.OTHER
        error = str(error_type)[:128] if error_type is not None else None
        if span.end_time and span.start_time:
            key = client_key(operation, provider, request_model, response_model, None, None, error)
            stats.client.record(key, "duration", (span.end_time - span.start_time) / 1e9)
        tokens = CallTokens(_first_count(attributes, _INPUT_KEYS), _first_count(attributes, _OUTPUT_KEYS),
                            _first_count(attributes, ("gen_ai.usage.cache_read.input_tokens",)),
                            _first_count(attributes, _CACHE_WRITE_KEYS),
                            _first_count(attributes, ("gen_ai.usage.reasoning.output_tokens",)))
        stats.record_client_tokens((operation, provider, request_model, response_model, None, None), error, tokens,
                                   None)

    def _http_server(self, span: ReadableSpan, attributes) -> None:
        http = self.registry.http
        scope = span.instrumentation_scope
        name = scope.name if scope is not None else None
        if name == c.SCOPE_NAME or (http.middleware_active and name in _ASGI_SCOPES):
            return  # our middleware measured this request already
        method = attributes.get("http.request.method") or attributes.get("http.method")
        if method is None or not span.end_time or not span.start_time:
            return
        method = method if method in c.KNOWN_METHODS else c.OTHER
        status = attributes.get("http.response.status_code") or attributes.get("http.status_code") or 0
        status = status if isinstance(status, int) else 0
        error_type = attributes.get("error.type")
        error_type = str(error_type)[:128] if error_type is not None else (str(status) if status >= 500 else None)
        scheme = attributes.get("url.scheme") or attributes.get("http.scheme") or "http"
        route = _str(attributes.get("http.route"))
        duration = (span.end_time - span.start_time) / 1e9
        key = request_key(method, scheme, route, status or None, error_type)
        http.span_requests.record(key, "duration", duration)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first_count(attributes, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value if 0 <= value <= MAX_TOKENS else None
    return None
