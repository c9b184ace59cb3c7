"""What a provider's answer headers say about one call.

- ``gen_ai.provider.name`` from the host (``api.openai.com`` is openai), else from the API shape;
- rate-limit headroom: OpenAI's ``x-ratelimit-{limit,remaining}-{requests,tokens}`` (and the many
  compatible providers'), Anthropic's ``anthropic-ratelimit-{requests,tokens,input-tokens,
  output-tokens}-{limit,remaining}``; a 0 is a value like any other;
- ``retry-after`` (seconds or an HTTP date).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.utils import parsedate_to_datetime
from operator import itemgetter
from time import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..llm.stats import RateLimit

# The conventions' gen_ai.provider.name values, by host (exact, or a suffix starting with ".").
_BY_HOST = {
    "api.openai.com": "openai", "api.anthropic.com": "anthropic", "generativelanguage.googleapis.com": "gcp.gemini",
    "aiplatform.googleapis.com": "gcp.vertex_ai", ".aiplatform.googleapis.com": "gcp.vertex_ai",
    ".openai.azure.com": "azure.ai.openai", ".services.ai.azure.com": "azure.ai.inference",
    "api.mistral.ai": "mistral_ai", "api.groq.com": "groq", "api.deepseek.com": "deepseek", "api.x.ai": "x_ai",
    "api.cohere.com": "cohere", "api.cohere.ai": "cohere", "api.perplexity.ai": "perplexity",
    ".amazonaws.com": "aws.bedrock",
}
RESOURCES = ("requests", "tokens", "input_tokens", "output_tokens")
# header name -> (resource, is the limit (else what remains))
RATE_LIMIT_HEADERS: dict[bytes, tuple[str, bool]] = {}
for _resource in RESOURCES:
    _dashed = _resource.replace("_", "-").encode()
    RATE_LIMIT_HEADERS[b"anthropic-ratelimit-" + _dashed + b"-limit"] = (_resource, True)
    RATE_LIMIT_HEADERS[b"anthropic-ratelimit-" + _dashed + b"-remaining"] = (_resource, False)
    if _resource in ("requests", "tokens"):
        RATE_LIMIT_HEADERS[b"x-ratelimit-limit-" + _dashed] = (_resource, True)
        RATE_LIMIT_HEADERS[b"x-ratelimit-remaining-" + _dashed] = (_resource, False)
_MAX_RETRY_AFTER = 24 * 3600.0
_MAX_NUMBER = 10**18


def provider_for(host: str, overrides: dict[str, str]) -> str | None:
    """The provider a host belongs to: the user's table first, then ours; None when neither knows it."""
    found = overrides.get(host)
    if found is not None:
        return found
    found = _BY_HOST.get(host)
    if found is not None:
        return found
    dot = host.find(".")
    while dot != -1:
        found = _BY_HOST.get(host[dot:])
        if found is not None:
            return found
        dot = host.find(".", dot + 1)
    return None


# The answer headers read, by lowercase name -> its kind: a rate-limit header's (resource, is_limit), or one of
# these names.
CONTENT_TYPE, CONTENT_ENCODING, RETRY_AFTER = "content-type", "content-encoding", "retry-after"
_KINDS: dict[bytes, tuple[str, bool] | str] = {
    **RATE_LIMIT_HEADERS, **{name.encode(): name for name in (CONTENT_TYPE, CONTENT_ENCODING, RETRY_AFTER)}}

HeaderItems = Iterable[Sequence[bytes]]  # (name, value) pairs, or httpx's own (name, lowercased name, value)
Layout = tuple[tuple[int, "tuple[str, bool] | str"], ...]  # (index of a wanted header, its kind), in order
_name_of = itemgetter(0)
# An upstream sends the same header names in the same order answer after answer: each list of names seen
# -> where its wanted headers are, so an answer's names are matched in one dict lookup (C code hashes and
# compares them) and only its wanted headers are visited. Bounded: past MAX_LAYOUTS lists, a new one is
# judged at each answer, not kept.
_LAYOUTS: dict[tuple[bytes, ...], Layout] = {}
MAX_LAYOUTS = 256


def _layout(names: tuple[bytes, ...]) -> Layout:
    """Where the wanted headers of a list of names not seen before are (the lowercase name decides),
    remembered while there is room."""
    found = tuple((index, kind) for index, name in enumerate(names) if (kind := _KINDS.get(name.lower())))
    if len(_LAYOUTS) < MAX_LAYOUTS:
        _LAYOUTS[names] = found
    return found


class Answer:
    """What one answer's headers say: its names matched to a known layout, then only the wanted headers read.

    Each item's first element is the name as sent and its last the value, so httpx's header triples are read
    as they are kept (building ``Headers.raw``'s pairs cost about 3.5 us an answer) and other clients' pairs alike.
    """

    __slots__ = ("content_type", "encoded", "limits", "retry_after")

    def __init__(self, raw: HeaderItems) -> None:
        self.content_type = b""  # lowercased
        self.encoded = False  # a content-encoding other than identity
        self.limits: list[RateLimit] | None = None  # ((resource, is_limit), value)
        self.retry_after: float | None = None
        if raw.__class__ is not list and raw.__class__ is not tuple:
            raw = list(raw)
        names = tuple(map(_name_of, raw))
        layout = _LAYOUTS.get(names)
        if layout is None:
            layout = _layout(names)
        limits = None
        for index, kind in layout:
            value = raw[index][-1]
            if kind.__class__ is tuple:
                try:
                    number = int(value)  # surrounding whitespace allowed; a whole number, and a sane one
                except ValueError:
                    continue
                if 0 <= number < _MAX_NUMBER:
                    if limits is None:
                        limits = self.limits = []
                    limits.append((kind, number))  # type: ignore[arg-type]
            elif kind == CONTENT_TYPE:
                self.content_type = value.lower()
            elif kind == CONTENT_ENCODING:
                self.encoded = value.strip().lower() not in (b"", b"identity")
            else:
                self.retry_after = retry_after_seconds(value)


def retry_after_seconds(value: bytes) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when it is neither."""
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER) if seconds == seconds else None
