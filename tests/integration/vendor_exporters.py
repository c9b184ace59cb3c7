"""A stand-in for a vendor's OpenTelemetry package, for tests/integration/test_otel_setups.py: exporters and an
id generator that the SDK's configuration finds by name through entry points (the test writes the package's
dist-info, so ``importlib.metadata`` sees it as installed). They write JSON lines under ``VENDOR_OUT``."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

TRACE_ID_PREFIX = 0xABCDEF  # the first 24 bits of every trace id this generator makes


def _append(file: str, line: dict) -> None:
    with open(Path(os.environ["VENDOR_OUT"]) / file, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


class FileSpanExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            _append("spans.jsonl", {"name": span.name, "kind": span.kind.name,
                                    "trace_id": format(span.context.trace_id, "032x"),
                                    "instance": span.resource.attributes.get("service.instance.id")})
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class FileMetricExporter(MetricExporter):
    """One line per export: each metric's histogram count (or sum of values), over every scope."""

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        totals: dict[str, float] = {}
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "count", None)
                        totals[metric.name] = totals.get(metric.name, 0) + (
                            value if value is not None else getattr(point, "value", 0))
        _append("metrics.jsonl", totals)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        pass


class PrefixIdGenerator(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return (TRACE_ID_PREFIX << 104) | random.getrandbits(104)


ENTRY_POINTS = {
    "opentelemetry_traces_exporter": {"vendor_file": f"{__name__}:FileSpanExporter"},
    "opentelemetry_metrics_exporter": {"vendor_file": f"{__name__}:FileMetricExporter"},
    "opentelemetry_id_generator": {"vendor_prefix": f"{__name__}:PrefixIdGenerator"},
}


def install_metadata(directory: Path) -> None:
    """The dist-info that makes this module an installed package with the entry points above."""
    info = directory / "vendor_exporters-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vendor-exporters\nVersion: 1.0\n")
    lines = []
    for group, names in ENTRY_POINTS.items():
        lines += [f"[{group}]", *(f"{name} = {target}" for name, target in names.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
