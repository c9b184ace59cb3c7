"""Process, system, event-loop, cache-decorator and app-gauge metrics, read back through the SDK."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
import types

import psutil
import pytest

from otel_llm_metrics import cached, observe_gauge
from otel_llm_metrics.resources.gpu import register_gpu


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_process_gauges_match_psutil(make_telemetry):
    telemetry = make_telemetry(resources=("process",))
    extra = [threading.Thread(target=time.sleep, args=(1,)) for _ in range(3)]
    for thread in extra:
        thread.start()
    view = telemetry.collect()
    me = psutil.Process()
    assert view.one("process.thread.count").value == me.num_threads()
    assert abs(view.one("process.memory.usage").value - me.memory_info().rss) < 20 * 2**20
    assert view.one("process.unix.file_descriptor.count").value == pytest.approx(me.num_fds(), abs=5)
    assert view.one("process.cpu.time", cpu__mode="user").value == pytest.approx(me.cpu_times().user, abs=0.5)
    assert 0 < view.one("process.uptime").value < time.time() - me.create_time() + 5
    assert {p.attributes["cpython.gc.generation"] for p in view.points("cpython.gc.collections")} == {0, 1, 2}
    for thread in extra:
        thread.join()


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def test_cpu_utilization_is_right_on_the_first_collection(make_telemetry):
    """Not zero, and equal to the CPU the process used, however the kernel splits it into modes.

    (On some VMs a busy loop is booked mostly as system time: the sum over modes is what is promised.)
    """
    telemetry = make_telemetry(resources=("process",))
    wall, cpu = time.time(), _cpu_seconds()
    _burn(0.3)
    points = telemetry.collect().points("process.cpu.utilization")
    used = (_cpu_seconds() - cpu) / ((time.time() - wall) * (psutil.cpu_count() or 1))
    assert {p.attributes["cpu.mode"] for p in points} == {"user", "system"}
    total = sum(p.value for p in points)
    assert total > 0, "no leading zero: the baseline was taken when the instruments were made"
    assert total == pytest.approx(used, rel=0.3), f"utilisation {total:.3f} for a share of {used:.3f} used"
    assert all(0 <= p.value <= 1 for p in points)


def test_system_metrics(make_telemetry):
    view = make_telemetry(resources=("system",)).collect()
    memory = {p.attributes["system.memory.state"]: p.value for p in view.points("system.memory.usage")}
    assert memory["used"] > 0 and memory["free"] > 0
    assert view.points("system.network.io") and view.points("system.filesystem.usage")
    assert all(0 <= p.value <= 1 for p in view.points("system.memory.utilization"))
    assert not view.points("process.cpu.time"), "process group is off here"


def test_forked_child_reports_its_own_process(make_telemetry):
    telemetry = make_telemetry(resources=("process",))
    telemetry.collect()
    # The child's thread count is its own: the parent's extra threads are not in it. What else a fork restarts in
    # the child (the price table's loader while it loads, the SDK's batch processors left by earlier tests in this
    # process) is counted rightly, so the child's count is compared with what the child itself has, just before
    # and just after: such a thread may end in between (it read 2 threads, then psutil 1).
    stop = threading.Event()
    extra = [threading.Thread(target=stop.wait, daemon=True) for _ in range(3)]
    for thread in extra:
        thread.start()
    ballast = bytearray(64 * 2**20)  # the parent is 64 MB bigger than a fresh child will make itself
    read_end, write_end = os.pipe()
    try:
        parent_threads = psutil.Process().num_threads()
        pid = os.fork()
        if pid == 0:
            try:
                del ballast
                before = psutil.Process().num_threads()
                view = telemetry.collect()
                os.write(write_end, json.dumps({
                    "pid": os.getpid(), "resource_pid": view.resources[0]["process.pid"],
                    "threads": view.one("process.thread.count").value,
                    "own": sorted((before, psutil.Process().num_threads())),
                    "uptime": view.one("process.uptime").value}).encode())
            finally:
                os._exit(0)
    finally:
        stop.set()
    os.close(write_end)
    os.waitpid(pid, 0)
    child = json.loads(os.read(read_end, 10_000))
    assert child["resource_pid"] == child["pid"] == pid
    fewest, most = child["own"]
    assert fewest <= child["threads"] <= most < parent_threads, (child, parent_threads)
    assert child["uptime"] < 5, "the child's own start time, not the parent's"
    assert ballast


def test_event_loop_lag_sees_a_blocked_loop_and_stops_cleanly(make_telemetry):
    telemetry = make_telemetry(loop_lag_interval=0.05)

    async def scenario() -> None:
        telemetry.ensure_serving()
        assert telemetry.loop_monitor.running
        await asyncio.sleep(0.12)
        time.sleep(0.3)  # blocking code in the loop
        await asyncio.sleep(0.12)
        telemetry.loop_monitor.stop()

    asyncio.run(scenario())
    lag = telemetry.collect().one("asyncio.event_loop.lag")
    assert lag.count >= 3 and lag.max >= 0.2
    assert not telemetry.loop_monitor.running


def test_a_raising_gauge_callback_does_not_stop_the_others(make_telemetry, caplog):
    telemetry = make_telemetry(resources=("process",))
    queue = [1, 2, 3]
    observe_gauge("app.queue.size", lambda: len(queue), unit="{job}", registry=telemetry.registry)
    observe_gauge("app.broken", lambda: 1 / 0, registry=telemetry.registry)
    observe_gauge("app.models.loaded", lambda: [(1, {"model": "a"}), (2, {"model": "b"})],
                  registry=telemetry.registry)
    for _ in range(2):
        view = telemetry.collect()
        assert view.one("app.queue.size").value == 3
        assert view.points("process.thread.count")
        assert sorted(p.value for p in view.points("app.models.loaded")) == [1, 2]
        assert not view.points("app.broken")
    assert len([r for r in caplog.records if "app.broken" in r.getMessage()]) == 1, "logged once"


def test_no_gpu_means_no_instruments_and_one_debug_line(make_telemetry, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML absent here, whatever this machine has
    caplog.set_level(logging.DEBUG, logger="otel_llm_metrics")
    telemetry = make_telemetry(resources=("gpu",))
    assert not [name for name in telemetry.collect().by_name if name.startswith("hw.")]
    assert register_gpu(telemetry.meter_provider.get_meter("again")) is False
    assert any("no GPU" in r.getMessage() or "NVML" in r.getMessage() for r in caplog.records)


def test_gpus_follow_the_hardware_conventions_with_one_hw_id_each(make_telemetry, monkeypatch):
    """No GPU here: a stand-in for NVML's few calls checks what we make of its answers (names, units, hw.id),
    and that one failing GPU hides neither the other nor the other readings."""
    class Rates:
        gpu = 37

    class Memory:
        used, total = 3 * 2**30, 16 * 2**30

    def uuid(handle):
        if handle == 1:
            raise RuntimeError("old driver")
        return b"GPU-1234"

    def power(handle):
        if handle == 1:
            raise RuntimeError("not supported")
        return 71500

    nvml = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=uuid, nvmlDeviceGetName=lambda h: "NVIDIA L4", NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetUtilizationRates=lambda h: Rates, nvmlDeviceGetMemoryInfo=lambda h: Memory,
        nvmlDeviceGetTemperature=lambda h, sensor: 61, nvmlDeviceGetPowerUsage=power)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    view = make_telemetry(resources=("gpu",)).collect()
    first, second = {"hw.id": "GPU-1234", "hw.name": "NVIDIA L4"}, {"hw.id": "gpu1", "hw.name": "NVIDIA L4"}

    def by_gpu(name):
        return {p.attributes["hw.id"]: (p.value, dict(p.attributes)) for p in view.points(name)}

    assert by_gpu("hw.gpu.utilization") == {"GPU-1234": (0.37, {**first, "hw.gpu.task": "general"}),
                                            "gpu1": (0.37, {**second, "hw.gpu.task": "general"})}
    assert by_gpu("hw.gpu.memory.usage")["GPU-1234"] == (3 * 2**30, first)
    assert by_gpu("hw.gpu.memory.limit")["gpu1"] == (16 * 2**30, second)
    assert by_gpu("hw.temperature")["GPU-1234"] == (61, {**first, "hw.sensor_location": "gpu"})
    assert by_gpu("hw.power") == {"GPU-1234": (71.5, {**first, "hw.type": "gpu"})}
    assert not [name for name in view.by_name if name.startswith("gpu.")]


def test_cached_decorator_sync_and_async(make_telemetry):
    telemetry = make_telemetry()
    calls = []

    @cached("embeddings", maxsize=2, registry=telemetry.registry)
    def embed(text: str) -> int:
        calls.append(text)
        return len(text)

    @cached("async-embeddings", ttl=60, registry=telemetry.registry)
    async def embed_async(text: str) -> int:
        await asyncio.sleep(0)
        return len(text)

    assert [embed(t) for t in ("a", "bb", "a", "ccc", "a")] == [1, 2, 1, 3, 1]
    assert calls == ["a", "bb", "ccc"], "LRU of 2: the hit on 'a' kept it, so 'ccc' evicted 'bb'"
    assert embed("bb") == 2 and calls[-1] == "bb", "the evicted entry is computed again"

    async def run() -> list[int]:
        return [await embed_async(t) for t in ("x", "x", "yy")]
    assert asyncio.run(run()) == [1, 1, 2]
    embed.cache_clear()
    view = telemetry.collect()
    sync = {n: view.one(f"cache.{n}", cache__name="embeddings").value for n in ("hits", "misses", "sets", "deletes")}
    assert sync == {"hits": 2, "misses": 4, "sets": 4, "deletes": 2}
    assert view.one("cache.hits", cache__name="async-embeddings").value == 1
    assert view.one("cache.operation.duration", cache__name="embeddings").count == 6


def test_explicit_cache_api(make_telemetry):
    from otel_llm_metrics import cache_metrics

    telemetry = make_telemetry()
    cache = cache_metrics("by-hand", registry=telemetry.registry)
    assert cache_metrics("by-hand", registry=telemetry.registry) is cache, "one object per name"
    cache.hit()
    cache.hit(2)
    cache.miss()
    cache.set()
    cache.delete()
    with cache.timed("get"):
        pass
    with pytest.raises(KeyError), cache.timed("get"):
        raise KeyError("boom")
    view = telemetry.collect()
    values = {n: view.one(f"cache.{n}", cache__name="by-hand").value
              for n in ("hits", "misses", "sets", "deletes", "errors")}
    assert values == {"hits": 3, "misses": 1, "sets": 1, "deletes": 1, "errors": 1}
    assert view.one("cache.operation.duration", cache__operation="get").count == 2
