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
    gpus = [_identify(pynvml, pynvml.nvmlDeviceGetHandleByIndex(i), i) for i in range(count)]

    def each(read: Any) -> Iterator[tuple[dict, Any]]:
        for handle, identity in gpus:
            try:
                yield identity, read(handle)
            except Exception:  # one GPU failing must not hide the others
                continue

    def utilization(_: CallbackOptions) -> Iterator[Observation]:
        for identity, rates in each(pynvml.nvmlDeviceGetUtilizationRates):
            yield Observation(rates.gpu / 100.0, {**identity, "hw.gpu.task": "general"})

    def memory_used(_: CallbackOptions) -> Iterator[Observation]:
        for identity, info in each(pynvml.nvmlDeviceGetMemoryInfo):
            yield Observation(info.used, identity)

    def memory_limit(_: CallbackOptions) -> Iterator[Observation]:
        for identity, info in each(pynvml.nvmlDeviceGetMemoryInfo):
            yield Observation(info.total, identity)

    def temperature(_: CallbackOptions) -> Iterator[Observation]:
        for identity, degrees in each(lambda h: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)):
            yield Observation(degrees, {**identity, "hw.sensor_location": "gpu"})

    def power(_: CallbackOptions) -> Iterator[Observation]:
        for identity, milliwatts in each(pynvml.nvmlDeviceGetPowerUsage):
            yield Observation(milliwatts / 1000.0, {**identity, "hw.type": "gpu"})

    for spec, callback in ((c.GPU_UTILIZATION, utilization), (c.GPU_MEMORY_USAGE, memory_used),
                           (c.GPU_MEMORY_LIMIT, memory_limit), (c.GPU_TEMPERATURE, temperature),
                           (c.GPU_POWER, power)):
        c.observe(meter, spec, callback)
    return True


def _identify(pynvml: Any, handle: Any, index: int) -> tuple[Any, dict]:  # noqa: ANN401 - NVML's own types
    """``hw.id`` is the GPU's UUID (stable across reboots and index changes), ``hw.name`` its model."""
    identity = {c.HW_ID: f"gpu{index}"}
    for key, read in ((c.HW_ID, pynvml.nvmlDeviceGetUUID), ("hw.name", pynvml.nvmlDeviceGetName)):
        try:
            value = read(handle)
            identity[key] = value.decode() if isinstance(value, bytes) else str(value)
        except Exception:  # an old driver without the call: the index still tells GPUs apart
            continue
    return handle, identity
