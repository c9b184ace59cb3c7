"""A small threaded HTTP server for the metrics page (any path, GET or HEAD), like prometheus_client's."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    page: Callable[[str | None], tuple[bytes, str]]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A scraper that went away (its timeout passed while the page was built) is not news either:
        socketserver would print a traceback to the app's log at each such scrape."""
        if isinstance(sys.exc_info()[1], ConnectionError):  # broken pipe, reset, aborted
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self._answer(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        try:
            body, content_type = self.server.page(self.headers.get("Accept"))
            status = 200
        except Exception:  # logged by the page's owner; the scraper sees a failed scrape
            body, content_type, status = b"metrics unavailable; see the app's log\n", "text/plain", 500
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - scrapes are not news
        pass


def serve(host: str, port: int, page: Callable[[str | None], tuple[bytes, str]]) -> ThreadingHTTPServer:
    """Listen on host:port (OSError if taken) and serve ``page(accept)`` from a daemon thread."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("PageServer", (_Server,), {"address_family": family})
    server = server_class((host, port), _Handler)
    server.page = page
    threading.Thread(target=server.serve_forever, name="otel-llm-metrics-page", daemon=True).start()
    return server
