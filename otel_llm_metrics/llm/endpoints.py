"""Which requests are LLM calls, and what API shape their responses have, from the path alone.

Decided once per request at its start with a few ``endswith`` checks, so non-LLM routes pay
almost nothing. The suffix match covers prefixes such as ``/openai/v1/chat/completions``.
"""

from __future__ import annotations

from dataclasses import dataclass

OPENAI, OLLAMA = "openai", "ollama"  # response dialects


@dataclass(frozen=True)
class Endpoint:
    operation: str  # gen_ai.operation.name
    dialect: str  # OPENAI or OLLAMA: how responses are shaped
    content_key: bytes  # the JSON key whose non-empty string values are generated text

    @property
    def content_patterns(self) -> tuple[bytes, bytes]:
        """Compact (``"content":"``) and spaced (``"content": "``) spellings of the key."""
        return self.content_key, self.content_key.replace(b':"', b': "')


_BY_SUFFIX: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", Endpoint("chat", OPENAI, b'"content":"')),
    ("/completions", Endpoint("text_completion", OPENAI, b'"text":"')),
    ("/embeddings", Endpoint("embeddings", OPENAI, b'"content":"')),
    ("/api/chat", Endpoint("chat", OLLAMA, b'"content":"')),
    ("/api/generate", Endpoint("text_completion", OLLAMA, b'"response":"')),
    ("/api/embed", Endpoint("embeddings", OLLAMA, b'"content":"')),
)


def endpoint_for(method: str, path: str) -> Endpoint | None:
    """The LLM endpoint a request calls, or None (only POSTs are LLM calls)."""
    if method != "POST":
        return None
    path = path.rstrip("/")
    for suffix, endpoint in _BY_SUFFIX:
        if path.endswith(suffix):
            return endpoint
    if path.endswith("/api/embeddings"):
        return _BY_SUFFIX[-1][1]
    return None
