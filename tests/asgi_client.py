"""Drive an ASGI app in-process the way a server does, including a client that leaves mid-stream."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio


@dataclass
class Result:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    raised: BaseException | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


async def call(app, method: str = "GET", path: str = "/", body: bytes = b"", headers=(),
               disconnect_after_chunks: int | None = None, scope_extra: dict | None = None) -> Result:
    """One request; with ``disconnect_after_chunks`` the client goes away after that many chunks."""
    result = Result()
    path, _, query = path.partition("?")
    gone = anyio.Event()
    sent_body = False
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode("utf-8", "surrogateescape"),
             "root_path": "", "query_string": query.encode(), "headers": [(k.lower(), v) for k, v in headers],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    scope.update(scope_extra or {})

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if gone.is_set():
            return  # like uvicorn: writes after a disconnect are dropped
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            if message.get("body"):
                result.chunks.append(message["body"])
            if disconnect_after_chunks is not None and len(result.chunks) >= disconnect_after_chunks:
                gone.set()
            if not message.get("more_body"):
                gone.set()

    try:
        await app(scope, receive, send)
    except BaseException as exc:  # noqa: BLE001 - the test looks at what the app raised
        result.raised = exc
    return result
