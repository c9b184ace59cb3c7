"""NVIDIA GPUs through NVML (the optional extra ``otel-llm-metrics[gpu]``, nvidia-ml-py).

With no GPU, no driver or no nvidia-ml-py: no error, no instruments, one debug log line. The
present case cannot be tested on machines without a GPU; the code is kept small for that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import catalogue as c

logger = logging.getLogger(__name__)


def register_gpu(meter: Meter) -> bool:
    """Create the GPU gauges if NVML answers; return whether it did."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception as exc:  # no module, no driver, no device
        logger.debug("otel_llm_metrics: no GPU metrics (%s)", exc)
        return False
    if not count:
        logger.debug("otel_llm_metrics: NVML found no GPU")
        return False
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def each(read: Any) -> Iterator[tuple[int, Any]]:
        for index, handle in enumerate(handles):
            try:
                yield index, read(handle)
            except Exception:  # one GPU failing must not hide the others
                continue

    def utilization(_: CallbackOptions) -> Iterator[Observation]:
        for index, rates in each(pynvml.nvmlDeviceGetUtilizationRates):
            yield Observation(rates.gpu / 100.0, {"gpu.index": index})

    def memory(_: CallbackOptions) -> Iterator[Observation]:
        for index, info in each(pynvml.nvmlDeviceGetMemoryInfo):
            yield Observation(info.used, {"gpu.index": index, "gpu.memory.state": "used"})
            yield Observation(info.total, {"gpu.index": index, "gpu.memory.state": "total"})

    def temperature(_: CallbackOptions) -> Iterator[Observation]:
        for index, degrees in each(lambda h: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)):
            yield Observation(degrees, {"gpu.index": index})

    def power(_: CallbackOptions) -> Iterator[Observation]:
        for index, milliwatts in each(pynvml.nvmlDeviceGetPowerUsage):
            yield Observation(milliwatts / 1000.0, {"gpu.index": index})

    for spec, callback in ((c.GPU_UTILIZATION, utilization), (c.GPU_MEMORY_USAGE, memory),
                           (c.GPU_TEMPERATURE, temperature), (c.GPU_POWER, power)):
        c.observe(meter, spec, callback)
    return True
