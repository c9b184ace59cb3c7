"""Living alongside frameworks' own telemetry without counting a request twice.

FastAPI (0.16x) records ``http.server.request.duration`` and ``http.server.active_requests`` itself
as soon as a global MeterProvider exists, and opentelemetry-instrumentation-asgi/-fastapi do the
same with semantic-convention opt-in. Where we measure, theirs are switched off on the app we
wrap, and a view drops any that still reach our MeterProvider under our names.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from opentelemetry.sdk.metrics.view import DropAggregation, View

from . import catalogue as c
from .console import announce

logger = logging.getLogger(__name__)

MEASURED = "_otel_llm_metrics_measured"  # on a Starlette app measured by a middleware around it or in it
OTHER_HTTP_SERVER_SCOPES = ("fastapi", "opentelemetry.instrumentation.asgi", "opentelemetry.instrumentation.fastapi",
                            "opentelemetry.instrumentation.starlette")
_OUR_HTTP_NAMES = (c.REQUEST_DURATION.name, c.ACTIVE_REQUESTS.name, c.REQUEST_BODY_SIZE.name,
                   c.RESPONSE_BODY_SIZE.name)


# Our GenAI histograms reach readers through the bridge, never as SDK instruments: an SDK instrument
# with one of these names is another library's copy, whatever its scope (opentelemetry-util-genai's
# handler records for the openai-v2 instrumentation; OpenLIT, and it seems recent OpenLLMetry, record
# client-side timings as gen_ai.server.time_to_first_token and friends).
_OUR_GEN_AI_SERVER_NAMES = (c.GEN_AI_SERVER_DURATION.name, c.GEN_AI_SERVER_TTFT.name, c.GEN_AI_SERVER_TPOT.name,
                            c.GEN_AI_SERVER_TOKENS.name)
_OUR_GEN_AI_CLIENT_NAMES = (c.GEN_AI_CLIENT_DURATION.name, c.GEN_AI_CLIENT_TTFC.name, c.GEN_AI_CLIENT_TPOC.name,
                            c.GEN_AI_CLIENT_TOKENS.name)
_OUR_LATEST_GEN_AI_CLIENT_NAMES = (c.GEN_AI_CLIENT_INFERENCE_DURATION.name, c.GEN_AI_CLIENT_INFERENCE_TTFC.name,
                                   c.GEN_AI_CLIENT_INFERENCE_TPOC.name, c.GEN_AI_CLIENT_OPERATION_INPUT_TOKENS.name,
                                   c.GEN_AI_CLIENT_OPERATION_OUTPUT_TOKENS.name)


def duplicate_dropping_views(client_numbers_ours: bool = True, latest_experimental: bool = False) -> list[View]:
    """Views that keep other libraries' copies of our numbers out of our readers.

    Other libraries' gen_ai.client.* copies are dropped when ours are made, at the HTTP client or from
    spans (tracing on); otherwise they are the only ones and are kept. ``latest_experimental``: the conventions
    our calls made follow (the registry's choice), so the names dropped are the names we publish.
    """
    views = [View(meter_name=scope, instrument_name=name, aggregation=DropAggregation())
             for scope in OTHER_HTTP_SERVER_SCOPES for name in _OUR_HTTP_NAMES]
    client_names = _OUR_LATEST_GEN_AI_CLIENT_NAMES if latest_experimental else _OUR_GEN_AI_CLIENT_NAMES
    names = _OUR_GEN_AI_SERVER_NAMES + (client_names if client_numbers_ours else ())
    views += [View(instrument_name=name, aggregation=DropAggregation()) for name in names]
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
    -starlette's (zero code installs them when present). One span per request, never two.

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
        fastapi_app._telemetry["metrics"] = False
        if tracing:
            fastapi_app._telemetry["tracing"] = False
        logger.debug("otel_llm_metrics: FastAPI native metrics%s turned off on %r",
                     " and tracing" if tracing else "", fastapi_app)
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
