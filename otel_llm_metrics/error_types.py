"""The bounded ``error.type`` of an exception raised while calling upstream, shared by every caller side (LLM
calls made, MCP calls made), so that the same failure has the same name wherever it is counted."""

from __future__ import annotations

from . import catalogue as c

TIMEOUT, CONNECTION_ERROR, ABANDONED = "timeout", "connection_error", "abandoned"
_CONNECTION_ERRORS = frozenset(("ConnectError", "ReadError", "WriteError", "CloseError", "NetworkError",
                                "RemoteProtocolError", "LocalProtocolError", "ProtocolError", "ProxyError",
                                "ConnectionError", "ConnectionResetError", "ConnectionRefusedError",
                                "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
                                "ClientPayloadError"))
_CANCELLED = frozenset(("CancelledError", "Cancelled", "GeneratorExit"))


def error_type_of(error: BaseException) -> str:
    """A bounded error.type for an exception raised while calling upstream."""
    name = type(error).__name__
    if name in _CANCELLED:
        return ABANDONED
    if "Timeout" in name or isinstance(error, TimeoutError):
        return TIMEOUT
    if name in _CONNECTION_ERRORS or isinstance(error, ConnectionError):
        return CONNECTION_ERROR
    return c.OTHER
