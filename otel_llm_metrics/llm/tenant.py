"""For whom a request was served (``tenant.id``): from code, a request header, a W3C baggage entry, or a keyed hash
of the caller's API key; the LLM calls made while serving it inherit it.

Values are capped like model names (``GenAiStats.tenants``). A raw secret is never a value: API keys
only ever appear as ``key-`` and the first 12 hex digits of HMAC-SHA256 under a secret of the user's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from .link import CURRENT

logger = logging.getLogger("otel_llm_metrics")

Resolver = Callable[[dict], "str | None"]  # given the ASGI scope
API_KEY_HEADERS = (b"authorization", b"x-api-key", b"api-key", b"x-goog-api-key")
OUTSIDE: ContextVar[str | None] = ContextVar("otel_llm_metrics_tenant", default=None)  # code outside requests


class TenantSource:
    """Reads a request's tenant from its scope, in a fixed order: code, header, baggage, API key hash."""

    def __init__(self, header: str | None = None, baggage_key: str | None = None, resolver: Resolver | None = None,
                 key_secret: str | None = None) -> None:
        self.header = header.lower().encode("latin-1") if header else None
        self.baggage_key = baggage_key
        self.resolver = resolver
        self.key_secret = key_secret.encode() if key_secret else None
        self._logged = False

    def at_start(self, scope: dict) -> str | None:
        tenant = self.from_code(scope)
        if tenant is not None:
            return tenant
        header = baggage = api_key = None
        for name, value in scope.get("headers", ()):
            if name == self.header:
                header = value
            elif name == b"baggage" and self.baggage_key:
                baggage = value
            elif self.key_secret and name in API_KEY_HEADERS and api_key is None:
                api_key = value
        if header is not None and header.strip():
            return header.decode("latin-1").strip()
        if baggage is not None:
            tenant = baggage_entry(baggage.decode("latin-1"), self.baggage_key)  # type: ignore[arg-type]
            if tenant:
                return tenant
        if api_key is not None:
            return key_hash(api_key, self.key_secret)  # type: ignore[arg-type]
        return None

    def from_code(self, scope: dict) -> str | None:
        """The user's resolver; it never raises into the app (a failure is logged once, and means no tenant)."""
        if self.resolver is None:
            return None
        try:
            tenant = self.resolver(scope)
        except Exception:
            if not self._logged:
                self._logged = True
                logger.exception("otel_llm_metrics: the tenant resolver (OTEL_LLM_METRICS_TENANT_FROM) raised; "
                                 "such requests get no tenant.id, and further failures are not logged")
            return None
        return str(tenant) if tenant is not None and tenant != "" else None


def baggage_entry(header: str, key: str) -> str | None:
    """One entry of a W3C ``baggage`` header (``k=v;prop,k2=v2``, values percent-encoded)."""
    for member in header.split(","):
        name, _, rest = member.partition("=")
        if name.strip() == key:
            value = unquote(rest.split(";", 1)[0].strip())
            return value or None
    return None


def key_hash(value: bytes, secret: bytes) -> str | None:
    """``key-`` + 12 hex digits of HMAC-SHA256(secret, API key): stable per key, useless without the secret."""
    key = value.strip()
    if key[:7].lower() == b"bearer ":
        key = key[7:].strip()
    if not key:
        return None
    return "key-" + hmac.new(secret, key, hashlib.sha256).hexdigest()[:12]


def from_request_state(scope: dict) -> str | None:
    """A resolver for apps that decide the tenant in their own code: ``request.state.tenant_id = ...``
    (in a FastAPI dependency or a Starlette middleware). Use ``OTEL_LLM_METRICS_TENANT_FROM=
    otel_llm_metrics.llm.tenant:from_request_state``."""
    state = scope.get("state")
    value = state.get("tenant_id") if isinstance(state, dict) else None
    return None if value is None else str(value)


@contextmanager
def tenant(name: str | None) -> Iterator[None]:
    """Serve the current request for ``name``, and make the LLM calls made in the block carry it.

    Inside a request the name sticks to that request (its counts are recorded after the block);
    outside one (a background job) it applies to the calls made in the block only.
    """
    link = CURRENT.get()
    if link is not None:
        link.tenant = name
        yield
        return
    token = OUTSIDE.set(name)
    try:
        yield
    finally:
        OUTSIDE.reset(token)


def current() -> str | None:
    """The tenant of the code running now (uncapped): its request's, or the enclosing ``tenant()`` block's."""
    link = CURRENT.get()
    if link is not None:
        return link.current_tenant()
    return OUTSIDE.get()


def resolver_from(value: Any) -> Resolver:  # noqa: ANN401 - a callable, or "module:function" text
    """The setting's value as a callable; raises ValueError naming what is wrong."""
    if callable(value):
        return value
    if not isinstance(value, str) or value.count(":") != 1:
        raise ValueError("expected module:function, e.g. otel_llm_metrics.llm.tenant:from_request_state")
    module_name, _, attr = value.strip().partition(":")
    import importlib

    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import it ({exc})") from None
    if not callable(found):
        raise ValueError(f"{value} is not callable")
    return found
