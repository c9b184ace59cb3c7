"""Which outbound requests are LLM calls, judged by the settings ``configure()`` was given.

A POST whose path is an LLM API shape (``llm.endpoints``), to any host unless ``OTEL_LLM_METRICS_UPSTREAM_HOSTS``
narrows it, becomes an ``Attempt``; anything else goes straight through (it belongs to the OTel HTTP client
instrumentations, whose numbers are never copied). The libraries' patches (``httpx_hook``, ``aiohttp_hook``)
ask ``current()`` at each request, so configuring again only changes the settings; the libraries' instrumentors
(``instrumentors``) place and remove the patches.
"""

from __future__ import annotations

import logging

from ..config import Settings
from ..llm.endpoints import endpoint_for
from ..llm.stats import GenAiStats
from .call import Attempt
from .headers import provider_for

logger = logging.getLogger(__name__)


class Hook:
    """The settings a measured request is judged by, and where its numbers go."""

    def __init__(self, settings: Settings, stats: GenAiStats) -> None:
        self.stats = stats
        self.hosts = frozenset(settings.upstream_hosts)
        self.providers = dict(item.split("=", 1) for item in settings.upstream_providers)
        self.provider_setting = settings.llm_provider
        self.estimate = settings.estimate_output_tokens

    def attempt(self, method: str, scheme: str, host: str, port: int | None, path: str, body: bytes | None,
                model: str | None = None) -> Attempt | None:
        """An Attempt for an LLM call, else None; never raises."""
        try:
            if method != "POST":
                return None
            endpoint = endpoint_for("POST", path)
            if endpoint is None or (self.hosts and host not in self.hosts):
                return None
            provider = provider_for(host, self.providers) or self.provider_setting
            attempt = Attempt(endpoint, self.stats, provider, host, port or (443 if scheme == "https" else 80), body,
                              self.estimate)
            if model is not None and attempt.exchange.request.model is None:
                attempt.exchange.request.model = str(model)
            return attempt
        except Exception:
            logger.debug("otel_llm_metrics: an outbound request was left unmeasured", exc_info=True)
            return None


_HOOK: Hook | None = None


def current() -> Hook | None:
    return _HOOK


def configure(settings: Settings, stats: GenAiStats, at_the_wire: bool = True) -> None:
    """Judge outbound requests by ``settings`` and record into ``stats`` (the libraries' instrumentors patch);
    ``at_the_wire``: some library's instrumentor measures, so other libraries' copies of these calls are copies."""
    global _HOOK
    _HOOK = Hook(settings, stats)
    stats.measured_at_the_wire = at_the_wire


def clear() -> None:
    """Measure nothing more (what is patched passes every request straight through)."""
    global _HOOK
    if _HOOK is not None:
        _HOOK.stats.measured_at_the_wire = False
    _HOOK = None
