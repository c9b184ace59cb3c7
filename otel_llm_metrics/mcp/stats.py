"""MCP numbers of one process: operation and session histograms for both directions, the session tables and the
caps on client-supplied values (methods, tool and prompt names, protocol versions, URIs).

The served operations are written by the event loop only; the calls made and both session tables may be written
from any thread (sync clients, the collection thread that ends idle sessions), so those are shared groups.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from .. import catalogue as c
from ..llm.stats import ValueLimiter
from ..series import HistogramGroup, SharedHistogramGroup

DEFAULT_IDLE_TIMEOUT = 1800.0  # the mcp SDK's own session idle timeout (StreamableHTTPSessionManager)
MAX_SESSIONS = 10_000  # per direction: past it, the session idle longest ends first
TRANSPORT, PROTOCOL = "tcp", "http"
# The methods of the MCP registry (semantic-conventions-genai model/mcp/registry.yaml): kept as they are, any
# other method a client invents is capped like model names.
KNOWN_METHODS = frozenset((
    "initialize", "ping", "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "notifications/message", "notifications/roots/list_changed", "notifications/resources/list_changed",
    "notifications/resources/updated", "notifications/prompts/list_changed", "notifications/tools/list_changed",
    "notifications/subscriptions/acknowledged", "tools/list", "tools/call", "resources/list",
    "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe", "prompts/list",
    "prompts/get", "completion/complete", "logging/setLevel", "sampling/createMessage", "roots/list",
    "elicitation/create", "server/discover", "subscriptions/listen"))


def operation_key(method: str, tool: str | None, prompt: str | None, error_type: str | None, status: str | None,
                  version: str | None, http_version: str | None, uri: str | None) -> tuple:
    """A served operation's attribute values, in the order of ``catalogue.MCP_OPERATION_ATTRS``."""
    return (method, tool, prompt, "execute_tool" if method == "tools/call" else None, error_type, status, version,
            TRANSPORT, PROTOCOL, http_version, uri)


def session_key(version: str | None, error_type: str | None) -> tuple:
    """A session's attribute values, in the order of ``catalogue.MCP_SESSION_ATTRS``."""
    return (version, PROTOCOL, error_type)


class Session:
    __slots__ = ("started", "seen", "version", "where")

    def __init__(self, started: float, version: str | None, where: tuple) -> None:
        self.started = started
        self.seen = started  # the last request of the session
        self.version = version
        self.where = where  # (address, port) on the client side, () when served


class SessionTable:
    """Open sessions by id, bounded, ordered by last activity; an idle or evicted session ends at its last request.

    The ids stay in here: they are never an attribute.
    """

    def __init__(self, group: SharedHistogramGroup, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self.group = group
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.lock = threading.Lock()
        self.open: OrderedDict[Any, Session] = OrderedDict()
        self.reported: set[tuple] = set()  # attribute values observed once (bounded by the caps on their values)

    def start(self, key: Any, at: float, version: str | None, where: tuple = ()) -> None:
        with self.lock:
            if key in self.open:
                return
            self._expire(perf_counter())
            while len(self.open) >= self.max_sessions:
                self._end(*self.open.popitem(last=False), None, None)
            self.open[key] = Session(at, version, where)

    def touch(self, key: Any, at: float, version: str | None = None) -> str | None:
        """A request of session ``key``; returns the session's protocol version when known."""
        with self.lock:
            session = self.open.get(key)
            if session is None:
                return None
            if at > session.seen:
                session.seen = at
            if version is not None and session.version is None:
                session.version = version
            self.open.move_to_end(key)
            return session.version

    def end(self, key: Any, at: float, error_type: str | None = None) -> None:
        with self.lock:
            session = self.open.pop(key, None)
            if session is not None:
                self._end(key, session, at, error_type)

    def expire(self) -> None:
        with self.lock:
            self._expire(perf_counter())

    def _expire(self, now: float) -> None:
        if not self.idle_timeout:
            return
        open_sessions = self.open
        while open_sessions:
            key, session = next(iter(open_sessions.items()))
            if now - session.seen < self.idle_timeout:
                break
            del open_sessions[key]
            self._end(key, session, None, None)

    def _end(self, _: Any, session: Session, at: float | None, error_type: str | None) -> None:
        ended = session.seen if at is None else at
        self.reported.add((session.version, *session.where))  # opened and closed between collections: reads 0
        self.group.record((*session_key(session.version, error_type), *session.where), "duration",
                          max(0.0, ended - session.started))

    def observe(self) -> Iterator[tuple[tuple, int]]:
        """Open sessions counted per (protocol version, *where) (idle ones ended first)."""
        with self.lock:
            self._expire(perf_counter())
            counts = dict.fromkeys(self.reported, 0)  # a set that emptied reads 0, not nothing
            for session in self.open.values():
                key = (session.version, *session.where)
                counts[key] = counts.get(key, 0) + 1
            self.reported.update(counts)
        yield from counts.items()

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.open = OrderedDict()
        self.reported = set()


class McpStats:
    def __init__(self, max_series: int = 2000, max_names: int = 100) -> None:
        self.server = HistogramGroup({"duration": c.MCP_SERVER_OPERATION_DURATION}, max_series)
        self.client = SharedHistogramGroup({"duration": c.MCP_CLIENT_OPERATION_DURATION}, max_series)
        self.server_session_group = SharedHistogramGroup({"duration": c.MCP_SERVER_SESSION_DURATION}, max_series)
        self.client_session_group = SharedHistogramGroup({"duration": c.MCP_CLIENT_SESSION_DURATION}, max_series)
        self.server_sessions = SessionTable(self.server_session_group)
        self.client_sessions = SessionTable(self.client_session_group)
        self.tools = ValueLimiter(max_names)
        self.prompts = ValueLimiter(max_names)
        self.methods = ValueLimiter(max_names)
        self.versions = ValueLimiter(max_names)
        self.uris = ValueLimiter(max_names)
        self.hosts = ValueLimiter(max_names)  # server.address of the servers called
        self.enabled = True
        self.resource_uri = False  # mcp.resource.uri is opt-in

    # -- configuration ----------------------------------------------------------------------------
    def configure(self, max_series: int, max_names: int) -> None:
        for limiter in (self.tools, self.prompts, self.methods, self.versions, self.uris, self.hosts):
            limiter.max_values = max_names

    def apply(self, settings: Any) -> None:
        """The MCP settings (read with defaults: a Settings without them means the defaults)."""
        self.enabled = bool(getattr(settings, "mcp", True))
        self.resource_uri = bool(getattr(settings, "mcp_resource_uri", False))
        idle = getattr(settings, "mcp_session_idle_timeout", DEFAULT_IDLE_TIMEOUT)
        self.server_sessions.idle_timeout = self.client_sessions.idle_timeout = float(idle)

    # -- capped values ----------------------------------------------------------------------------
    def method(self, method: str) -> str:
        return method if method in KNOWN_METHODS else (self.methods(method) or c.OTHER)

    def names(self, method: str, name: str | None, uri: str | None) -> tuple[str | None, str | None, str | None]:
        """(tool, prompt, uri) as attribute values: capped, the URI only when opted in."""
        if name is not None:
            if method == "tools/call":
                return self.tools(name), None, None
            return None, self.prompts(name), None
        if uri is not None and self.resource_uri:
            return None, None, self.uris(uri)
        return None, None, None

    def version(self, version: str | None) -> str | None:
        return None if version is None else self.versions(version)

    # -- the registry's protocol ------------------------------------------------------------------
    def histogram_groups(self) -> tuple[HistogramGroup, ...]:
        return (self.server, self.client, self.server_session_group, self.client_session_group)

    def observers(self) -> dict[c.InstrumentSpec, Callable[[CallbackOptions], Iterator[Observation]]]:
        return {c.MCP_SERVER_SESSIONS: self.observe_server_sessions,
                c.MCP_CLIENT_SESSIONS: self.observe_client_sessions}

    def observe_server_sessions(self, _: CallbackOptions) -> Iterator[Observation]:
        for (version,), count in self.server_sessions.observe():
            yield Observation(count, {c.MCP_PROTOCOL_VERSION: version} if version else {})

    def observe_client_sessions(self, _: CallbackOptions) -> Iterator[Observation]:
        for (version, address, port), count in self.client_sessions.observe():
            attributes = {c.SERVER_ADDRESS: address, c.SERVER_PORT: port}
            if version:
                attributes[c.MCP_PROTOCOL_VERSION] = version
            yield Observation(count, attributes)

    def reset(self) -> None:
        for group in self.histogram_groups():
            group.reset()
        self.server_sessions.reset()
        self.client_sessions.reset()


_BY_GEN_AI: weakref.WeakKeyDictionary[Any, McpStats] = weakref.WeakKeyDictionary()


def link(gen_ai: Any, mcp: McpStats) -> None:
    """Tie a registry's MCP numbers to its GenAI numbers: the httpx hook knows the latter (``hook.Hook.stats``)."""
    _BY_GEN_AI[gen_ai] = mcp


def for_gen_ai(gen_ai: Any) -> McpStats | None:
    return _BY_GEN_AI.get(gen_ai)
