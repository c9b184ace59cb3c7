"""One OpenTelemetry instrumentor per HTTP client library, as opentelemetry-python-contrib's are.

Each can be left out by its entry point name in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (zero code skips it;
``setup()`` reads the same variable), and ``uninstrument()`` puts the library's own methods back. What they patch
measures only while the hook (``hook.current()``) has settings: installing the package does not measure anything.

- ``otel_llm_metrics_httpx``: httpx and httpx2 (``Client._send_single_request``), and the openai/anthropic SDKs'
  retry loops (``client.operation``);
- ``otel_llm_metrics_aiohttp``: aiohttp (``ClientSession._request``, ``ClientResponse.release``/``close``);
- ``otel_llm_metrics_botocore``: boto3/botocore's ``bedrock-runtime`` (``Endpoint._send`` per attempt,
  ``Endpoint._send_request`` per operation).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ..config import Settings
from ..llm.stats import GenAiStats
from . import aiohttp_hook, botocore_hook, hook, httpx_hook
from .hook import current

HTTPX = "otel_llm_metrics_httpx"  # entry point names, as in pyproject.toml
AIOHTTP = "otel_llm_metrics_aiohttp"
BOTOCORE = "otel_llm_metrics_botocore"


def disabled(name: str, environ: dict[str, str] | None = None) -> bool:
    """Whether ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` leaves the instrumentor ``name`` out (or ``*``: all)."""
    value = (os.environ if environ is None else environ).get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    names = {part.strip() for part in value.split(",")}
    return name in names or "*" in names


class HttpxLlmInstrumentor(BaseInstrumentor):
    """LLM calls made with httpx and httpx2: every SDK built on them, and LiteLLM."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # httpx, httpx2 or neither: each is followed when (if ever) it is imported

    def _instrument(self, **kwargs: Any) -> list[str]:
        return httpx_hook.patch(current)

    def _uninstrument(self, **kwargs: Any) -> None:
        httpx_hook.unpatch()


class AiohttpLlmInstrumentor(BaseInstrumentor):
    """LLM calls made with aiohttp's ClientSession."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> list[str]:
        return aiohttp_hook.patch(current)

    def _uninstrument(self, **kwargs: Any) -> None:
        aiohttp_hook.unpatch()


class BotocoreLlmInstrumentor(BaseInstrumentor):
    """AWS Bedrock calls made with boto3/botocore (``bedrock-runtime``): Converse, InvokeModel and their streams."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> list[str]:
        return botocore_hook.patch(current)

    def _uninstrument(self, **kwargs: Any) -> None:
        botocore_hook.unpatch()


INSTRUMENTORS: dict[str, type[BaseInstrumentor]] = {HTTPX: HttpxLlmInstrumentor, AIOHTTP: AiohttpLlmInstrumentor,
                                                    BOTOCORE: BotocoreLlmInstrumentor}


def install(settings: Settings, stats: GenAiStats, *, instrument: bool = True) -> list[str]:
    """Measure LLM calls: the hook's settings, then (``instrument``: ``setup()``'s way; zero code loads the entry
    points itself) every instrumentor the variable does not leave out. Names the libraries installed."""
    hook.configure(settings, stats, at_the_wire=not all(disabled(name) for name in INSTRUMENTORS))
    libraries: list[str] = []
    for name, instrumentor_class in INSTRUMENTORS.items():
        instrumentor = instrumentor_class()
        if not instrument or disabled(name):
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            libraries += instrumentor._instrument()  # patched already: followed again with these settings
        else:
            libraries += instrumentor.instrument() or []
    return libraries


def uninstall() -> None:
    """Measure nothing more, and put every library's own methods back."""
    hook.clear()
    for instrumentor_class in INSTRUMENTORS.values():
        instrumentor = instrumentor_class()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
