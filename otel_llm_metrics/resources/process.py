"""Process and system metrics from psutil, read only when a reader collects.

CPU utilisation is the difference in CPU time since the previous reading divided by the elapsed
wall time and the CPU count: the first reading is taken when the instruments are created, so the
first collection is right too (psutil's own ``cpu_percent`` returns 0.0 on its first call). The
``psutil.Process`` is re-bound when the pid changes, so a forked worker reports itself.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import catalogue as c
from .sampling import SharedReading

_REAL_FILESYSTEMS = frozenset(("ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "ntfs", "apfs", "overlay"))


@dataclass
class ProcessReading:
    cpu: dict[str, float] = field(default_factory=dict)
    utilization: dict[str, float] = field(default_factory=dict)
    rss: int = 0
    vms: int = 0
    threads: int = 0
    fds: int | None = None
    switches: dict[str, int] = field(default_factory=dict)
    uptime: float = 0.0


class ProcessSampler:
    def __init__(self) -> None:
        self._pid = -1
        self._process: psutil.Process | None = None
        self._last: tuple[float, float, float] | None = None  # (wall, user, system)
        self.reading = SharedReading(self._read)
        self._read()  # the baseline for the first utilisation

    def _bind(self) -> psutil.Process:
        if self._pid != os.getpid() or self._process is None:
            self._pid = os.getpid()
            self._process = psutil.Process(self._pid)
            self._last = None
        return self._process

    def _read(self) -> ProcessReading:
        process = self._bind()
        reading = ProcessReading()
        with process.oneshot():
            times = process.cpu_times()
            memory = process.memory_info()
            reading.threads = process.num_threads()
            switches = process.num_ctx_switches()
            created = process.create_time()
            if hasattr(process, "num_fds"):
                reading.fds = process.num_fds()
        now = time.time()
        reading.cpu = {"user": times.user, "system": times.system}
        if self._last is not None and now > self._last[0]:
            elapsed = (now - self._last[0]) * (psutil.cpu_count() or 1)
            reading.utilization = {"user": max(0.0, (times.user - self._last[1]) / elapsed),
                                   "system": max(0.0, (times.system - self._last[2]) / elapsed)}
        self._last = (now, times.user, times.system)
        reading.rss, reading.vms = memory.rss, memory.vms
        reading.switches = {"voluntary": switches.voluntary, "involuntary": switches.involuntary}
        reading.uptime = max(0.0, now - created)
        return reading

    # -- callbacks ------------------------------------------------------------------------------
    def cpu_time(self, _: CallbackOptions) -> Iterator[Observation]:
        for mode, seconds in self.reading.get().cpu.items():
            yield Observation(seconds, {c.CPU_MODE: mode})

    def cpu_utilization(self, _: CallbackOptions) -> Iterator[Observation]:
        for mode, share in self.reading.get().utilization.items():
            yield Observation(share, {c.CPU_MODE: mode})

    def memory_usage(self, _: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self.reading.get().rss)

    def memory_virtual(self, _: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self.reading.get().vms)

    def threads(self, _: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self.reading.get().threads)

    def fds(self, _: CallbackOptions) -> Iterator[Observation]:
        count = self.reading.get().fds
        if count is not None:
            yield Observation(count)

    def context_switches(self, _: CallbackOptions) -> Iterator[Observation]:
        for kind, count in self.reading.get().switches.items():
            yield Observation(count, {"process.context_switch.type": kind})

    def uptime(self, _: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self.reading.get().uptime)


def gc_observations(field_name: str) -> Iterator[Observation]:
    for generation, stats in enumerate(gc.get_stats()):
        yield Observation(stats.get(field_name, 0), {"cpython.gc.generation": generation})


class SystemSampler:
    def __init__(self) -> None:
        self._last_cpu = psutil.cpu_times()
        self.cpu = SharedReading(self._cpu)
        self.memory = SharedReading(psutil.virtual_memory)
        self.disks = SharedReading(lambda: psutil.disk_io_counters(perdisk=True) or {})
        self.network = SharedReading(lambda: psutil.net_io_counters(pernic=True) or {})
        self.filesystems = SharedReading(self._filesystems)

    def _cpu(self) -> dict[str, float]:
        now = psutil.cpu_times()
        before, self._last_cpu = self._last_cpu, now
        deltas = {mode: max(0.0, getattr(now, mode) - getattr(before, mode)) for mode in now._fields}
        total = sum(deltas.values())
        return {mode: value / total for mode, value in deltas.items()} if total > 0 else {}

    @staticmethod
    def _filesystems() -> list[tuple[str, str, str, int, int]]:
        found = []
        for part in psutil.disk_partitions(all=False):
            if part.fstype not in _REAL_FILESYSTEMS:
                continue
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            found.append((part.device, part.mountpoint, part.fstype, usage.used, usage.free))
        return found

    def cpu_utilization(self, _: CallbackOptions) -> Iterator[Observation]:
        for mode, share in self.cpu.get().items():
            yield Observation(share, {c.CPU_MODE: mode})

    def memory_usage(self, _: CallbackOptions) -> Iterator[Observation]:
        memory = self.memory.get()
        for state in ("used", "free", "cached", "buffers"):
            if hasattr(memory, state):
                yield Observation(getattr(memory, state), {"system.memory.state": state})

    def memory_utilization(self, _: CallbackOptions) -> Iterator[Observation]:
        memory = self.memory.get()
        for state in ("used", "free", "cached", "buffers"):
            if hasattr(memory, state) and memory.total:
                yield Observation(getattr(memory, state) / memory.total, {"system.memory.state": state})

    def disk_io(self, _: CallbackOptions) -> Iterator[Observation]:
        for device, counters in self.disks.get().items():
            yield Observation(counters.read_bytes, {"system.device": device, "disk.io.direction": "read"})
            yield Observation(counters.write_bytes, {"system.device": device, "disk.io.direction": "write"})

    def network_io(self, _: CallbackOptions) -> Iterator[Observation]:
        for nic, counters in self.network.get().items():
            yield Observation(counters.bytes_recv, {"network.interface.name": nic, "network.io.direction": "receive"})
            yield Observation(counters.bytes_sent, {"network.interface.name": nic, "network.io.direction": "transmit"})

    def filesystem_usage(self, _: CallbackOptions) -> Iterator[Observation]:
        for device, mountpoint, fstype, used, free in self.filesystems.get():
            base = {"system.device": device, "system.filesystem.mountpoint": mountpoint,
                    "system.filesystem.type": fstype}
            yield Observation(used, {**base, "system.filesystem.state": "used"})
            yield Observation(free, {**base, "system.filesystem.state": "free"})


def register_process(meter: Meter) -> ProcessSampler:
    sampler = ProcessSampler()
    for spec, callback in ((c.PROCESS_CPU_TIME, sampler.cpu_time), (c.PROCESS_CPU_UTILIZATION, sampler.cpu_utilization),
                           (c.PROCESS_MEMORY_USAGE, sampler.memory_usage),
                           (c.PROCESS_MEMORY_VIRTUAL, sampler.memory_virtual), (c.PROCESS_THREADS, sampler.threads),
                           (c.PROCESS_FDS, sampler.fds), (c.PROCESS_CONTEXT_SWITCHES, sampler.context_switches),
                           (c.PROCESS_UPTIME, sampler.uptime),
                           (c.GC_COLLECTIONS, lambda _: gc_observations("collections")),
                           (c.GC_COLLECTED, lambda _: gc_observations("collected")),
                           (c.GC_UNCOLLECTABLE, lambda _: gc_observations("uncollectable"))):
        c.observe(meter, spec, callback)
    return sampler


def register_system(meter: Meter) -> SystemSampler:
    sampler = SystemSampler()
    for spec, callback in ((c.SYSTEM_CPU_UTILIZATION, sampler.cpu_utilization),
                           (c.SYSTEM_MEMORY_USAGE, sampler.memory_usage),
                           (c.SYSTEM_MEMORY_UTILIZATION, sampler.memory_utilization),
                           (c.SYSTEM_DISK_IO, sampler.disk_io), (c.SYSTEM_NETWORK_IO, sampler.network_io),
                           (c.SYSTEM_FILESYSTEM_USAGE, sampler.filesystem_usage)):
        c.observe(meter, spec, callback)
    return sampler
