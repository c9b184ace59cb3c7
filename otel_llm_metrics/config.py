"""One settings object, read from the standard ``OTEL_*`` variables, ours (``OTEL_LLM_METRICS_*``)
and keyword arguments, validated once at start-up so that a bad value fails with a message that
names the setting, the value and what it accepts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

METRICS_EXPORTERS = ("prometheus", "otlp", "console", "none")
TRACES_EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
RESOURCE_GROUPS = ("process", "system", "gpu", "none")
DEFAULT_EXCLUDED = ("/health", "/healthz", "/livez", "/readyz", "/metrics")


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    service_name: str | None = None
    service_version: str | None = None
    metrics_exporters: tuple[str, ...] = ("prometheus",)
    traces_exporter: str = "none"
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9464
    prometheus_port_attempts: int = 16
    export_interval_ms: int = 60_000
    export_timeout_ms: int = 10_000
    shutdown_timeout_s: float = 5.0
    slow_request_seconds: float = 10.0
    excluded_routes: tuple[str, ...] = DEFAULT_EXCLUDED
    max_series: int = 2000
    server_timing: bool = True
    llm_parsing: bool = True
    llm_provider: str | None = None
    max_model_names: int = 100
    resources: tuple[str, ...] = ("process", "system", "gpu")
    loop_lag_interval: float = 0.5
    disabled: bool = False

    @property
    def tracing(self) -> bool:
        return self.traces_exporter != "none"


# (setting, variable, parser) for every value that may come from the environment.
def _str(var: str, value: str) -> str:
    return value.strip()


def _int_in(low: int, high: int):
    def parse(var: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise ConfigError(f"{var}={value!r} is not valid: expected a whole number from {low} to {high}. "
                              f"Fix: set {var} to such a number or unset it for the default.")
        return number
    return parse


def _seconds(var: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number != number or number == float("inf"):
        raise ConfigError(f"{var}={value!r} is not valid: expected seconds as a number >= 0 (0 turns it off). "
                          f"Fix: e.g. {var}=5")
    return number


def _bool(var: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var}={value!r} is not valid: expected true or false.")


def _choice_list(allowed: tuple[str, ...]):
    def parse(var: str, value: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
        bad = [v for v in items if v not in allowed]
        if bad or not items:
            raise ConfigError(f"{var}={value!r} is not valid: {', '.join(bad) or 'empty'} is not one of "
                              f"{', '.join(allowed)} (a comma-separated list). Fix: e.g. {var}=prometheus,otlp")
        if "none" in items:
            return ("none",)
        return items
    return parse


def _choice(allowed: tuple[str, ...]):
    def parse(var: str, value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in allowed:
            raise ConfigError(f"{var}={value!r} is not valid: expected one of {', '.join(allowed)}.")
        return lowered
    return parse


def _paths(var: str, value: str) -> tuple[str, ...]:
    items = tuple(p.strip() for p in value.split(",") if p.strip())
    bad = [p for p in items if not p.startswith("/")]
    if bad:
        raise ConfigError(f"{var}={value!r} is not valid: {bad[0]!r} does not start with '/'. Expected a "
                          f"comma-separated list of paths; end one with '*' to exclude a prefix (/internal/*).")
    return items


def _endpoint(var: str, value: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{var}={value!r} is not valid: expected a URL such as http://127.0.0.1:4317 "
                          f"(http:// for plaintext, https:// for TLS).")
    return value


ENV_VARS: tuple[tuple[str, str, object, str], ...] = (
    ("service_name", "OTEL_SERVICE_NAME", _str, "service.name of the resource"),
    ("service_version", "OTEL_SERVICE_VERSION", _str, "service.version of the resource"),
    ("metrics_exporters", "OTEL_METRICS_EXPORTER", _choice_list(METRICS_EXPORTERS),
     "prometheus (default without an OTLP endpoint), otlp (default with one), console, none; a list"),
    ("traces_exporter", "OTEL_TRACES_EXPORTER", _choice(TRACES_EXPORTERS), "none (default), otlp, console"),
    ("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", _endpoint, "collector address; turns OTLP on"),
    ("otlp_protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", _choice(OTLP_PROTOCOLS), "grpc (default) or http/protobuf"),
    ("prometheus_host", "OTEL_EXPORTER_PROMETHEUS_HOST", _str, "embedded endpoint address (127.0.0.1)"),
    ("prometheus_port", "OTEL_EXPORTER_PROMETHEUS_PORT", _int_in(1, 65535), "embedded endpoint port (9464)"),
    ("export_interval_ms", "OTEL_METRIC_EXPORT_INTERVAL", _int_in(100, 86_400_000), "OTLP push interval, ms"),
    ("export_timeout_ms", "OTEL_METRIC_EXPORT_TIMEOUT", _int_in(100, 600_000), "OTLP push timeout, ms"),
    ("disabled", "OTEL_SDK_DISABLED", _bool, "true turns all of it off"),
    ("slow_request_seconds", "OTEL_LLM_METRICS_SLOW_REQUEST_SECONDS", _seconds,
     "log a WARNING above this duration (time to first byte for streams); 0 = off"),
    ("excluded_routes", "OTEL_LLM_METRICS_EXCLUDED_ROUTES", _paths, "paths not measured; '/x/*' for a prefix"),
    ("max_series", "OTEL_LLM_METRICS_MAX_SERIES", _int_in(1, 1_000_000),
     "attribute sets per instrument before overflow"),
    ("server_timing", "OTEL_LLM_METRICS_SERVER_TIMING", _bool, "add Server-Timing to non-streamed responses"),
    ("llm_parsing", "OTEL_LLM_METRICS_LLM_PARSING", _bool,
     "parse LLM requests and responses for GenAI metrics (true); false keeps only HTTP metrics"),
    ("llm_provider", "OTEL_LLM_METRICS_PROVIDER_NAME", _str,
     "gen_ai.provider.name to report; default by API shape: openai, or ollama for /api/*"),
    ("max_model_names", "OTEL_LLM_METRICS_MAX_MODEL_NAMES", _int_in(1, 100_000),
     "distinct model names kept per attribute; later ones become _OTHER"),
    ("resources", "OTEL_LLM_METRICS_RESOURCES", _choice_list(RESOURCE_GROUPS),
     "resource metric groups: process, system, gpu (all by default; gpu only where NVML answers); none"),
    ("loop_lag_interval", "OTEL_LLM_METRICS_LOOP_LAG_INTERVAL", _seconds,
     "event-loop lag sampling interval, seconds (0.5); 0 turns it off"),
    ("prometheus_port_attempts", "OTEL_LLM_METRICS_PROMETHEUS_PORT_ATTEMPTS", _int_in(1, 1024),
     "ports tried upwards from the Prometheus port when it is taken (one per worker)"),
    ("shutdown_timeout_s", "OTEL_LLM_METRICS_SHUTDOWN_TIMEOUT", _seconds, "bound on the final flush, seconds"),
)

_OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from the environment, then keyword overrides (which win); raises ConfigError."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for attr, var, parse, _ in ENV_VARS:
        raw = env.get(var)
        if raw is not None and raw.strip() != "":
            values[attr] = parse(var, raw)  # type: ignore[operator]
    if "metrics_exporters" not in values and any(env.get(v) for v in _OTLP_ENDPOINT_VARS):
        values["metrics_exporters"] = ("otlp",)
    known = {f.name for f in fields(Settings)}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}: expected one of {', '.join(sorted(known))}.")
        if value is not None:
            values[key] = value
    if "otlp_endpoint" in overrides and overrides["otlp_endpoint"] and "metrics_exporters" not in overrides:
        values["metrics_exporters"] = tuple(dict.fromkeys((*values.get("metrics_exporters", ()), "otlp")))
    settings = replace(Settings(), **values)
    return _validate(settings)


def _validate(settings: Settings) -> Settings:
    """Checks on values that came from keyword arguments, with the same kind of message."""
    if isinstance(settings.metrics_exporters, str):
        settings = replace(settings, metrics_exporters=_choice_list(METRICS_EXPORTERS)(
            "metrics_exporters", settings.metrics_exporters))
    for exporter in settings.metrics_exporters:
        if exporter not in METRICS_EXPORTERS:
            raise ConfigError(f"metrics_exporters={settings.metrics_exporters!r}: {exporter!r} is not one of "
                              f"{', '.join(METRICS_EXPORTERS)}.")
    _choice(TRACES_EXPORTERS)("traces_exporter", settings.traces_exporter)
    _choice(OTLP_PROTOCOLS)("otlp_protocol", settings.otlp_protocol)
    if settings.otlp_endpoint is not None:
        _endpoint("otlp_endpoint", settings.otlp_endpoint)
    _int_in(1, 65535)("prometheus_port", str(settings.prometheus_port))
    _int_in(1, 1_000_000)("max_series", str(settings.max_series))
    _seconds("slow_request_seconds", str(settings.slow_request_seconds))
    _paths("excluded_routes", ",".join(settings.excluded_routes))
    return settings


def settings_table() -> str:
    """The README's configuration table, from the same list the parser uses."""
    rows = ["| variable | setting (`setup()` keyword) | meaning |", "|---|---|---|"]
    for attr, var, _, meaning in ENV_VARS:
        rows.append(f"| `{var}` | `{attr}` | {meaning} |")
    return "\n".join(rows)
