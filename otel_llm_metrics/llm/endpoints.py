"""Which requests are LLM calls, and what API shape their responses have, from the path alone.

Decided once per request at its start with a few ``endswith`` checks, so non-LLM routes pay
almost nothing. The suffix match covers prefixes such as ``/openai/v1/chat/completions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

# Response dialects: how an API shapes its answers.
OPENAI, OLLAMA, ANTHROPIC, RESPONSES = "openai", "ollama", "anthropic", "openai_responses"
PROVIDERS = {OPENAI: "openai", OLLAMA: "ollama", ANTHROPIC: "anthropic", RESPONSES: "openai"}

# Other generated output that streams outside the main content key: reasoning (vLLM, DeepSeek,
# llama.cpp server, Ollama's thinking) and tool calls. (pattern, its empty form or b"").
_REASONING = ((b'"reasoning_content":"', b'"reasoning_content":""'), (b'"reasoning":"', b'"reasoning":""'),
              (b'"tool_calls":[{', b""))
_THINKING = ((b'"thinking":"', b'"thinking":""'),)


@dataclass(frozen=True)
class Endpoint:
    operation: str  # gen_ai.operation.name
    dialect: str  # how responses are shaped: OPENAI, OLLAMA, ANTHROPIC or RESPONSES
    content_key: bytes  # what marks one generated-content event: a key with a non-empty string, or a tag
    more_content: tuple[tuple[bytes, bytes], ...] = ()  # looked for only when content_key is absent

    @cached_property  # computed once per endpoint, not per request
    def content_patterns(self) -> tuple[bytes, bytes]:
        """Compact (``"content":"``) and spaced (``"content": "``) spellings of the key."""
        return self.content_key, self.content_key.replace(b':"', b': "')

    @cached_property
    def more_content_patterns(self) -> tuple[tuple[bytes, bytes], ...]:
        """``more_content`` in both spellings."""
        spaced = tuple((key.replace(b'":', b'": '), empty.replace(b'":', b'": ')) for key, empty in self.more_content)
        return self.more_content + spaced

    @cached_property
    def more_content_hints(self) -> tuple[bytes, ...]:
        """The fewest key prefixes that every ``more_content`` pattern starts with (one ``in`` test each)."""
        stems = sorted({key[:key.index(b'"', 1)] for key, _ in self.more_content}, key=len)
        return tuple(stem for i, stem in enumerate(stems) if not any(stem.startswith(s) for s in stems[:i]))


_BY_SUFFIX: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", Endpoint("chat", OPENAI, b'"content":"', _REASONING)),
    ("/completions", Endpoint("text_completion", OPENAI, b'"text":"', _REASONING)),
    ("/embeddings", Endpoint("embeddings", OPENAI, b'"content":"')),
    # Anthropic Messages: every content_block_delta (text, thinking, tool input) is generated output.
    ("/v1/messages", Endpoint("chat", ANTHROPIC, b'"content_block_delta"')),
    # OpenAI Responses: every response.*.delta event (output text, reasoning, tool arguments, refusals).
    ("/v1/responses", Endpoint("chat", RESPONSES, b'.delta"')),
    ("/api/chat", Endpoint("chat", OLLAMA, b'"content":"', _THINKING)),
    ("/api/generate", Endpoint("text_completion", OLLAMA, b'"response":"', _THINKING)),
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
