"""``python -m tests.integration.unhooked_server PORT module:app``: hypercorn's programmatic API, which zero code
has no loader hook for. A FastAPI or Starlette app is measured all the same, where it builds its stack."""

import asyncio
import importlib
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

if __name__ == "__main__":
    port, target = sys.argv[1], sys.argv[2]
    module, name = target.split(":")
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    asyncio.run(serve(getattr(importlib.import_module(module), name), config))
