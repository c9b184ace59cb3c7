"""Which requests are LLM calls, and what API shape their responses have, from the path alone.

Decided once per request at its start with a few ``endswith`` checks, so non-LLM routes pay
almost nothing. The suffix match covers prefixes such as ``/openai/v1/chat/completions``.
Google's generateContent API names its method after a colon (``.../models/{model}:generateContent``)
and the model in the path, so those endpoints also carry the requested model and the provider. So does AWS
Bedrock's runtime (``/model/{modelId}/converse``, ``/converse-stream``, ``/invoke``,
``/invoke-with-response-stream``): its model id is URL-encoded in the path (botocore encodes ``:`` and ``/``;
an ASGI server hands it decoded), and it may be an inference profile (``us.anthropic...``) or an ARN.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from urllib.parse import unquote

# Response dialects: how an API shapes its answers.
OPENAI, OLLAMA, ANTHROPIC, RESPONSES = "openai", "ollama", "anthropic", "openai_responses"
GEMINI = "gemini"  # Google's generateContent, on the Gemini API and on Vertex AI alike
GEMINI_PROVIDER, VERTEX_PROVIDER = "gcp.gemini", "gcp.vertex_ai"
BEDROCK = "aws.bedrock"  # AWS Bedrock's runtime: JSON bodies and AWS event-stream frames (read by llm.bedrock)
PROVIDERS = {OPENAI: "openai", OLLAMA: "ollama", ANTHROPIC: "anthropic", RESPONSES: "openai",
             GEMINI: GEMINI_PROVIDER, BEDROCK: "aws.bedrock"}
MAX_PATH_MODEL = 2048  # a longer model segment is cut (as a model name in a request body is)

# Other generated output that streams outside the main content key: reasoning (vLLM, DeepSeek,
# llama.cpp server, Ollama's thinking) and tool calls. (pattern, its empty form or b"").
_REASONING = ((b'"reasoning_content":"', b'"reasoning_content":""'), (b'"reasoning":"', b'"reasoning":""'),
              (b'"tool_calls":[{', b""))
_THINKING = ((b'"thinking":"', b'"thinking":""'),)
# Gemini parts other than text that are generated output: function calls and code to execute.
_GEMINI_PARTS = ((b'"functionCall":{', b""), (b'"executableCode":{', b""))
# Gemini's methods: the part of the path after the last colon.
_GEMINI_METHODS = {"generateContent": "generate_content", "streamGenerateContent": "generate_content",
                   "embedContent": "embeddings", "batchEmbedContents": "embeddings"}


@dataclass(frozen=True)
class Endpoint:
    operation: str  # gen_ai.operation.name
    dialect: str  # how responses are shaped: OPENAI, OLLAMA, ANTHROPIC, RESPONSES or GEMINI
    content_key: bytes  # what marks one generated-content event: a key with a non-empty string, or a tag
    more_content: tuple[tuple[bytes, bytes], ...] = ()  # looked for only when content_key is absent
    provider: str = ""  # gen_ai.provider.name when the dialect alone does not say it (Gemini API or Vertex AI)
    model: str | None = None  # the requested model when the path names it (Gemini, Bedrock); else the body does
    action: str = ""  # Bedrock's: converse, converse-stream, invoke or invoke-with-response-stream

    @property
    def provider_name(self) -> str:
        """The provider to report unless the user configured one."""
        return self.provider or PROVIDERS[self.dialect]

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
        """The fewest key prefixes that every ``more_content`` pattern starts with (one ``find`` each)."""
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
    if path.endswith(_BEDROCK_ACTIONS):
        found = bedrock_endpoint(path)
        if found is not None:
            return found
    head, colon, method_name = path.rpartition(":")
    if colon:
        operation = _GEMINI_METHODS.get(method_name)
        if operation is not None:
            model = head[head.rfind("/") + 1:][:MAX_PATH_MODEL] or None
            vertex = "/publishers/" in head or "/locations/" in head
            return _gemini_endpoint(operation, VERTEX_PROVIDER if vertex else GEMINI_PROVIDER, model)
    return None


@lru_cache(maxsize=256)  # bounded: model names in paths come from clients
def _gemini_endpoint(operation: str, provider: str, model: str | None) -> Endpoint:
    """A generateContent endpoint for one model, built once so its byte patterns are computed once.

    Every text part is output, thoughts (``"thought": true``) included, and so are function calls and code.
    """
    return Endpoint(operation, GEMINI, b'"text":"', _GEMINI_PARTS, provider, model)


# Bedrock runtime: the action after the model id, and whether its answer is an event stream.
_BEDROCK_ACTIONS = ("/converse", "/converse-stream", "/invoke", "/invoke-with-response-stream")
BEDROCK_STREAMS = frozenset(("converse-stream", "invoke-with-response-stream"))
# InvokeModel's operation by model family (a substring of the model id, first match wins); else chat.
_INVOKE_OPERATIONS = (("embed", "embeddings"), ("amazon.titan-text", "text_completion"),
                      ("amazon.titan-tg1", "text_completion"))


def bedrock_endpoint(path: str) -> Endpoint | None:
    """The Bedrock runtime endpoint of ``/model/{modelId}/{action}`` (under any prefix), or None."""
    at = path.find("/model/")
    if at == -1:
        return None
    head, _, action = path.rpartition("/")
    model = head[at + 7:]
    if not model or "/" + action not in _BEDROCK_ACTIONS:
        return None
    return _bedrock_endpoint(action, model[:3 * MAX_PATH_MODEL])


def bedrock_operation(action: str, model: str) -> str:
    """``chat`` for Converse; for InvokeModel the model family's shape (embeddings, text completion, chat)."""
    if action.startswith("converse"):
        return "chat"
    lowered = model.lower()
    for family, operation in _INVOKE_OPERATIONS:
        if family in lowered:
            return operation
    return "chat"


@lru_cache(maxsize=256)  # bounded: model ids in paths come from clients
def _bedrock_endpoint(action: str, encoded_model: str) -> Endpoint:
    model = unquote(encoded_model)[:MAX_PATH_MODEL]
    return Endpoint(bedrock_operation(action, model), BEDROCK, b'"contentBlockDelta"', (), BEDROCK, model, action)
