"""Merged snapshots as a Prometheus page: the text format, or OpenMetrics with exemplars on
histogram buckets when the scraper asks for it. Names and labels are the ones the OTel
Prometheus exporter gives (a test renders the same data both ways and compares).

Written here rather than through prometheus_client's families: with 8 workers of 2,000 histogram
series, its generic rendering took 500 ms of a 760 ms scrape; this one precomputes each series'
labels once and writes its buckets with plain string joins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from itertools import accumulate
from typing import Any

from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name
from prometheus_client.utils import floatToGoString

from .snapshot import COUNTER, HISTOGRAM, MetricRows

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
SCOPE_LABELS = ("otel_scope_name", "otel_scope_version", "otel_scope_schema_url")


def content_type_for(accept: str | None) -> str:
    """OpenMetrics when the scraper lists it (Prometheus does, first), else the text format."""
    wanted = [part.split(";")[0].strip() for part in (accept or "").split(",")]
    return OPENMETRICS if "application/openmetrics-text" in wanted else TEXT


def render(metrics: Iterable[MetricRows], resource: dict[str, Any], content_type: str) -> bytes:
    openmetrics = content_type == OPENMETRICS
    out: list[str] = []
    if resource:
        labels = _label_string({sanitize_attribute(k): _label_value(v) for k, v in resource.items()})
        out.append("# HELP target Target metadata\n# TYPE target info\n" if openmetrics else
                   "# HELP target_info Target metadata\n# TYPE target_info gauge\n")
        out.append(f"target_info{{{labels}}} 1.0\n")
    families: dict[tuple[str, str, str, str], list[MetricRows]] = {}
    for rows in metrics:  # one family per Prometheus name, as the OTel exporter groups them
        if rows.points:
            family = (sanitize_full_name(rows.name), rows.description, map_unit(rows.unit), rows.kind)
            families.setdefault(family, []).append(rows)
    for (name, description, unit, kind), members in families.items():
        _family(out, name, description, unit, kind, members, openmetrics)
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode("utf-8")


def _family(out: list[str], name: str, description: str, unit: str, kind: str, members: list[MetricRows],
            openmetrics: bool) -> None:
    base = name
    if kind == COUNTER and base.endswith("_total"):
        base = base[:-6]
    if unit and not base.endswith("_" + unit):
        base += "_" + unit
    kind_name = kind if kind in (COUNTER, HISTOGRAM) else "gauge"
    shown = base + "_total" if kind == COUNTER and not openmetrics else base
    help_text = description.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        help_text = help_text.replace('"', r'\"')
    out.append(f"# HELP {shown} {help_text}\n# TYPE {shown} {kind_name}\n")
    if openmetrics and unit:
        out.append(f"# UNIT {shown} {unit}\n")
    labelled = [(_labels(rows, point[0]), point, rows) for rows in members for point in rows.points]
    keys = sorted({key for labels, _, _ in labelled for key in labels})
    for labels, point, rows in labelled:
        values = {key: labels.get(key, "") for key in keys}
        if kind == HISTOGRAM:
            _histogram(out, base, values, rows.bounds, point, openmetrics)
        else:
            out.append(f"{base}_total" if kind == COUNTER else base)
            out.append(f"{{{_label_string(values)}}} {_number(point[1])}\n" if values else f" {_number(point[1])}\n")


def _histogram(out: list[str], base: str, labels: dict[str, str], bounds: list[float], point: list[Any],
               openmetrics: bool) -> None:
    before = _label_string({k: v for k, v in labels.items() if k < "le"})
    after = _label_string({k: v for k, v in labels.items() if k > "le"})
    opening = f"{base}_bucket{{{before}," if before else f"{base}_bucket{{"
    closing = f",{after}}} " if after else "} "
    totals = list(accumulate(point[1]))
    lines = [f'{opening}le="{le}"{closing}{total}.0\n' if total < 1_000_000 else
             f'{opening}le="{le}"{closing}{floatToGoString(total)}\n'
             for le, total in zip(_les(bounds), totals, strict=True)]
    if openmetrics:
        for i, value, at, trace_id, span_id in point[3]:
            exemplar = f'{{span_id="{span_id}",trace_id="{trace_id}"}} {floatToGoString(value)} {at}'
            lines[i] = f"{lines[i][:-1]} # {exemplar}\n"
    out.extend(lines)
    plain = _label_string(labels)
    labelled = f"{{{plain}}} " if plain else " "
    count = _number(totals[-1] if totals else 0)
    out.append(f"{base}_count{labelled}{count}\n{base}_sum{labelled}{_number(point[2])}\n")


@lru_cache(maxsize=64)
def _les_of(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return (*(f"{bound}" for bound in bounds), "+Inf")


def _les(bounds: list[float]) -> tuple[str, ...]:
    """The le label of each bucket, as prometheus_client writes a bound (str of the float)."""
    return _les_of(tuple(bounds))


def _labels(rows: MetricRows, attributes: dict[str, Any]) -> dict[str, str]:
    labels = dict(zip(SCOPE_LABELS, rows.scope, strict=True))
    for key, value in attributes.items():
        labels[sanitize_attribute(key)] = _label_value(value)
    return labels


def _label_string(labels: dict[str, str]) -> str:
    return ",".join(f'{key}="{_escape(labels[key])}"' for key in sorted(labels))


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _label_value(value: Any) -> str:
    """As the OTel exporter writes one: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _number(value: float) -> str:
    """As prometheus_client writes a value (Go's float format); whole counts on a fast path."""
    if type(value) is int and -1_000_000 < value < 1_000_000:
        return f"{value}.0"
    return floatToGoString(value)
