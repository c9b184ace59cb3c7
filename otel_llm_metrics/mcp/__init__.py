"""MCP (Model Context Protocol) measured at the wire: JSON-RPC over streamable HTTP, served and called.

``jsonrpc`` reads the messages (both directions), ``stats`` keeps the numbers and the session tables,
``server`` is the middleware's per-request reader, ``client`` the httpx hook's.
"""
