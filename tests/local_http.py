"""The tests' own requests to the servers they start on 127.0.0.1, through one client per process.

``httpx.get`` builds a client at every call, and with it an SSL context: 25 ms of CPU here (0.2 ms without). A
readiness poll every 50 ms (``servers.wait_for``) so kept half a core busy beside the very server it waited for.
This client is built once and keeps no connection open, so each request is a fresh connection, as ``httpx.get``'s
was (a scrape lands on whichever worker the kernel picks; a stopped server leaves nothing behind).
"""

from __future__ import annotations

import httpx

_CLIENT = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))  # httpx.get's defaults otherwise
get = _CLIENT.get
post = _CLIENT.post
