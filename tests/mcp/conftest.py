"""Every in-process HTTP test runs under asyncio and under trio: Starlette apps run on either (anyio)."""

from __future__ import annotations

import anyio
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def async_backend(request) -> str:
    return request.param


@pytest.fixture
def run(async_backend):
    """``run(coroutine)`` to completion in a fresh event loop of the test's async library."""

    async def wait(coroutine):
        return await coroutine

    return lambda coroutine: anyio.run(wait, coroutine, backend=async_backend)
