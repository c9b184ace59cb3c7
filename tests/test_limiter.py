"""The limiter makes queue depth and wait time real numbers."""

from __future__ import annotations

import asyncio

import pytest

from otel_llm_metrics import ConcurrencyLimiter


async def _poll(condition, deadline_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + deadline_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def test_waiting_callers_and_wait_time_are_reported(make_telemetry):
    telemetry = make_telemetry()
    limiter = ConcurrencyLimiter(1, name="upstream", registry=telemetry.registry)
    seen = {}

    async def scenario():
        release = asyncio.Event()

        async def holder():
            async with limiter:
                await release.wait()

        async def waiter():
            async with limiter:
                pass

        tasks = [asyncio.create_task(holder()), asyncio.create_task(waiter()), asyncio.create_task(waiter())]
        await _poll(lambda: limiter.waiting == 2)
        view = telemetry.collect()
        seen["waiting"] = view.one("concurrency_limiter.waiting_requests").value
        seen["active"] = view.one("concurrency_limiter.active_requests").value
        await asyncio.sleep(0.02)
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert seen == {"waiting": 2, "active": 1}
    view = telemetry.collect()
    wait = view.one("concurrency_limiter.wait_time", concurrency_limiter__name="upstream")
    assert wait.count == 3
    assert wait.bucket_counts[0] == 1, "the uncontended acquire waited 0 s"
    assert wait.max >= 0.02
    assert view.one("concurrency_limiter.waiting_requests").value == 0
    assert view.one("concurrency_limiter.limit").value == 1


def test_the_slot_is_released_when_the_body_raises(make_telemetry):
    limiter = ConcurrencyLimiter(1, registry=make_telemetry().registry)

    async def scenario():
        with pytest.raises(RuntimeError):
            async with limiter:
                raise RuntimeError("upstream failed")
        async with limiter:
            return limiter.active

    assert asyncio.run(scenario()) == 1
    assert limiter.active == 0


@pytest.mark.parametrize("limit", [0, -1, 1.5, "4"])
def test_invalid_limit_is_refused(limit):
    with pytest.raises(ValueError, match="limit"):
        ConcurrencyLimiter(limit)
