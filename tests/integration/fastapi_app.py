"""An unmodified FastAPI app for the zero-code server tests (``fastapi run`` finds ``app`` here)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello/{name}")
async def hello(name: str) -> dict:
    return {"hello": name}


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


class Outer:
    """The app inside a plain ASGI wrapper of the user's own, as some apps export it."""

    def __init__(self, inner) -> None:
        self.app = inner

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


outer = Outer(app)
