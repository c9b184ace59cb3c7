"""Living alongside frameworks' own telemetry without counting a request twice.

FastAPI (0.16x) records ``http.server.request.duration`` and ``http.server.active_requests`` itself
as soon as a global MeterProvider exists, and opentelemetry-instrumentation-asgi/-fastapi do the
same with semantic-convention opt-in. Where we measure, theirs are switched off on the app we
wrap, and a view drops any that still reach our MeterProvider under our names.

GenAI instrumentations copy our gen_ai.* names too, but only some measure calls we measure: the table
``COPYING_SCOPES`` says which scopes' numbers are copies (and why); every other scope's are kept.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics.view import DropAggregation, View

from . import catalogue as c
from .console import announce
from .unheard_spans import hollow_while_unheard

logger = logging.getLogger(__name__)

MEASURED = "_otel_llm_metrics_measured"  # on a Starlette app measured by a middleware around it or in it
OTHER_HTTP_SERVER_SCOPES = ("fastapi", "opentelemetry.instrumentation.asgi", "opentelemetry.instrumentation.fastapi",
                            "opentelemetry.instrumentation.starlette")
_OUR_HTTP_NAMES = (c.REQUEST_DURATION.name, c.ACTIVE_REQUESTS.name, c.REQUEST_BODY_SIZE.name,
                   c.RESPONSE_BODY_SIZE.name)


# Our GenAI histograms reach readers through the bridge, never as SDK instruments, so an SDK instrument with one of
# these names is another library's. It is a copy only where we measure the same calls (issue 26): a scope is
# selected by the table below, never by the name alone. Bedrock through botocore, SDKs on `requests`, gRPC clients:
# we never see those calls, so their numbers are the only ones and always stay.
_OUR_GEN_AI_SERVER_NAMES = (c.GEN_AI_SERVER_DURATION.name, c.GEN_AI_SERVER_TTFT.name, c.GEN_AI_SERVER_TPOT.name,
                            c.GEN_AI_SERVER_TOKENS.name)
_OUR_GEN_AI_CLIENT_NAMES = (c.GEN_AI_CLIENT_DURATION.name, c.GEN_AI_CLIENT_TTFC.name, c.GEN_AI_CLIENT_TPOC.name,
                            c.GEN_AI_CLIENT_TOKENS.name)
_OUR_LATEST_GEN_AI_CLIENT_NAMES = (c.GEN_AI_CLIENT_INFERENCE_DURATION.name, c.GEN_AI_CLIENT_INFERENCE_TTFC.name,
                                   c.GEN_AI_CLIENT_INFERENCE_TPOC.name, c.GEN_AI_CLIENT_OPERATION_INPUT_TOKENS.name,
                                   c.GEN_AI_CLIENT_OPERATION_OUTPUT_TOKENS.name)
_ALL_GEN_AI_CLIENT_NAMES = frozenset(_OUR_GEN_AI_CLIENT_NAMES + _OUR_LATEST_GEN_AI_CLIENT_NAMES)

# gen_ai.provider.name (or the older gen_ai.system) of calls whose SDK goes over httpx or aiohttp to an API our
# wire hook parses (OpenAI-compatible, Anthropic Messages, Ollama, Gemini's generateContent): the points of a
# shared scope that are copies. gcp.vertex_ai is not here: the vertexai SDK calls over gRPC (google-genai on
# Vertex goes over httpx, but the two share the name, and a doubled series is better than a vanished one).
WIRE_PROVIDERS = frozenset({"openai", "azure.ai.openai", "anthropic", "gcp.gemini", "ollama", "mistral_ai", "groq",
                            "deepseek"})
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
# What of ours measures a scope's calls: an instrumentor's entry point name (client.instrumentors), or "spans" (the
# span processor turns other instrumentations' gen_ai spans into ours while tracing is on; never botocore's).
OVER_HTTPX = frozenset({"otel_llm_metrics_httpx", "spans"})
SPANS = "spans"


@dataclass(frozen=True)
class CopyingScope:
    """An instrumentation scope whose metrics copy ours, and why (docs/opentelemetry-setup.md shows the table).

    ``client``: its gen_ai.client.* are copies while one of ``measured_by`` (ours) measures the same calls (at the
    wire, or from spans); ``providers``: a scope shared by several SDKs, where only points of these providers
    are; ``mislabels``: it records client-side timings under our served gen_ai.server.* names, which would mix
    with what this app served, so those are dropped always.
    """

    scope: str
    why: str
    client: bool = True
    mislabels: bool = False
    providers: frozenset[str] | None = None
    measured_by: frozenset[str] = OVER_HTTPX


COPYING_SCOPES: tuple[CopyingScope, ...] = (
    CopyingScope("opentelemetry.instrumentation.openai_v2",
                 "opentelemetry-instrumentation-openai-v2: the openai SDK, over httpx; we measure the same call at "
                 "the wire"),
    CopyingScope("opentelemetry.util.genai.handler",
                 "opentelemetry-util-genai's handler, which openai-v2 and other GenAI instrumentations record "
                 "through: the points of providers whose SDKs call over httpx; we measure the same call at the wire",
                 providers=WIRE_PROVIDERS),
    CopyingScope("opentelemetry.instrumentation.openai.v1",
                 "OpenLLMetry's openai instrumentation (openai >= 1): the openai SDK, over httpx; we measure the "
                 "same call at the wire", mislabels=True),
    CopyingScope("opentelemetry.instrumentation.openai.v0",
                 "OpenLLMetry's openai instrumentation (openai < 1)", client=False, mislabels=True),
    CopyingScope("opentelemetry.instrumentation.anthropic",
                 "the anthropic instrumentation (OpenLLMetry's, and contrib's): the anthropic SDK, over httpx; we "
                 "measure the same call at the wire", mislabels=True),
    CopyingScope("openlit.otel.metrics",
                 "OpenLIT, one scope for all its SDK wrappers: the points of providers whose SDKs call over httpx; "
                 "we measure the same call at the wire", mislabels=True, providers=WIRE_PROVIDERS),
    CopyingScope("opentelemetry.instrumentation.botocore.bedrock-runtime",
                 "opentelemetry-instrumentation-botocore's Bedrock calls: copies only while our botocore instrumentor "
                 "measures the same calls at the wire (otel_llm_metrics_botocore); left out, theirs are the only ones",
                 measured_by=frozenset({"otel_llm_metrics_botocore"})),
)
_BY_SCOPE = {row.scope: row for row in COPYING_SCOPES}


def copied(scope: str, name: str, owned: frozenset[str], measuring: frozenset[str] = OVER_HTTPX
           ) -> bool | frozenset[str]:
    """Whether scope ``scope``'s metric ``name`` copies one of ours (``owned``: the names we publish now;
    ``measuring``: what of ours measures calls now, entry point names and "spans").

    True: all of it; a set of providers: its points of those (a shared scope); False: it is kept. Names other
    than gen_ai.* (process.*, system.*, http.server.*) are this process's own facts or served requests, copies
    whatever the scope; gen_ai.* ones go by the table, and an unlisted scope is kept.
    """
    if scope == c.SCOPE_NAME or name not in owned:
        return False
    if not name.startswith("gen_ai."):
        return True
    row = _BY_SCOPE.get(scope)
    if row is None:
        return False
    if name in _OUR_GEN_AI_SERVER_NAMES:
        return row.mislabels
    if name in _ALL_GEN_AI_CLIENT_NAMES and row.client and row.measured_by & measuring:
        return row.providers if row.providers is not None else True
    return False


def duplicate_dropping_views(measuring: frozenset[str] = OVER_HTTPX, latest_experimental: bool = False) -> list[View]:
    """Views that keep other libraries' copies of our numbers out of our readers, before they are aggregated.

    Frameworks' http.server.* (we measure the requests they serve); the gen_ai.* of the scopes in
    ``COPYING_SCOPES``: their gen_ai.client.* when ours of the same calls are made (``measuring``: the entry point
    names of our instrumentors at work, and "spans"; otherwise theirs are the only ones), their mislabelled
    gen_ai.server.* always. A shared
    scope's copies are only some of its points: the bridge leaves those out at collection (views cannot).
    ``latest_experimental``: the conventions our calls made follow, so the names dropped are the names we publish.
    """
    views = [View(meter_name=scope, instrument_name=name, aggregation=DropAggregation())
             for scope in OTHER_HTTP_SERVER_SCOPES for name in _OUR_HTTP_NAMES]
    client_names = _OUR_LATEST_GEN_AI_CLIENT_NAMES if latest_experimental else _OUR_GEN_AI_CLIENT_NAMES
    for row in COPYING_SCOPES:
        names = _OUR_GEN_AI_SERVER_NAMES if row.mislabels else ()
        if row.client and row.providers is None and row.measured_by & measuring:
            names += client_names
        views += [View(meter_name=row.scope, instrument_name=name, aggregation=DropAggregation()) for name in names]
    return views


def native_fastapi(app: Any) -> Any | None:
    """The FastAPI app with native telemetry inside ``app``'s wrapper chain, if there is one."""
    for inner in wrapper_chain(app):
        if isinstance(getattr(inner, "_telemetry", None), dict) and hasattr(inner, "_native_telemetry"):
            return inner
    return None


def quiet_native_telemetry(app: Any, *, tracing: bool) -> None:
    """Turn off FastAPI's native metrics (we measure them) and, when we make the server span, every
    other server span inside: FastAPI's native one, and opentelemetry-instrumentation-fastapi's or
    -starlette's (zero code installs them when present). One span per request, never two. When ours make none,
    FastAPI's native spans stay (they put the caller's context in place), hollow while no processor listens.

    For the middleware the caller puts around ``app`` or into it (``Telemetry.instrument``, ``add_to``):
    the Starlette apps in ``app``'s chain are marked measured, so zero code's wrap where an app builds its
    stack (``server_loaders``) leaves them alone."""
    for inner in wrapper_chain(app):
        if hasattr(inner, "build_middleware_stack"):
            try:
                vars(inner)[MEASURED] = True
            except TypeError:  # no __dict__
                continue
    quiet_app_telemetry(app, tracing=tracing)


def quiet_app_telemetry(app: Any, *, tracing: bool) -> None:
    """``quiet_native_telemetry`` without marking anything: for a middleware the stack gets elsewhere."""
    fastapi_app = native_fastapi(app)
    if fastapi_app is not None:
        config = fastapi_app._telemetry
        config["metrics"] = False
        hollow = None
        if tracing:
            config["tracing"] = False
        elif config.get("tracing") and not config.get("auto_configure"):  # auto_configure registers on the provider
            hollow = hollow_while_unheard(config.get("tracer_provider") or trace.get_tracer_provider())
            config["tracer_provider"] = hollow or config.get("tracer_provider")
        logger.debug("otel_llm_metrics: FastAPI native metrics turned off, its tracing %s, on %r",
                     "off" if tracing else "hollow while no span processor listens" if hollow else "as it was",
                     fastapi_app)
    if tracing:
        for inner in wrapper_chain(app):
            if getattr(inner, "_is_instrumented_by_opentelemetry", False):
                _uninstrument(inner)


def wrapper_chain(app: Any) -> list[Any]:
    """``app`` and every app it wraps (``.app``), each once."""
    chain: list[Any] = []
    while app is not None and all(app is not seen for seen in chain):
        chain.append(app)
        app = getattr(app, "app", None)
    return chain


def _uninstrument(app: Any) -> None:
    """Take an OTel framework instrumentation's server middleware off ``app``, with its public API."""
    for module, name in (("opentelemetry.instrumentation.fastapi", "FastAPIInstrumentor"),
                         ("opentelemetry.instrumentation.starlette", "StarletteInstrumentor")):
        try:
            instrumentor = getattr(importlib.import_module(module), name)
            instrumentor.uninstrument_app(app)
        except Exception:  # not installed, or not this framework's app
            continue
        if not getattr(app, "_is_instrumented_by_opentelemetry", False):
            announce(f"otel_llm_metrics: {name}'s server span turned off on {type(app).__name__}: "
                     "ours replaces it (one span per request)")
            return
