"""One settings object, read from the standard ``OTEL_*`` variables, ours (``OTEL_LLM_METRICS_*``)
and keyword arguments, validated once at start-up.

Every setting has one ``Option``: one parser that takes the variable's text and a keyword's
Python value alike, and one example that is itself valid. A bad value fails with a message that
names where it came from, the value, what is accepted, and a fix that works as written (a test
applies every suggested fix and starts).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

METRICS_EXPORTERS = ("prometheus", "otlp", "console", "none")  # and any installed opentelemetry_metrics_exporter
TRACES_EXPORTERS = ("otlp", "console", "none")  # and any installed opentelemetry_traces_exporter
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
RESOURCE_GROUPS = ("process", "system", "gpu", "none")
LOG_FORMATS = ("text", "json")
DEFAULT_EXCLUDED = ("/health", "/healthz", "/livez", "/readyz", "/metrics")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message says which, and a fix that works."""


@dataclass(frozen=True)
class Settings:
    service_name: str | None = None
    service_version: str | None = None
    metrics_exporters: tuple[str, ...] = ("prometheus",)
    traces_exporter: tuple[str, ...] = ("none",)
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9464
    prometheus_port_attempts: int = 16
    export_interval_ms: int = 60_000
    export_timeout_ms: int = 10_000
    shutdown_timeout_s: float = 5.0
    slow_request_seconds: float = 10.0
    log_format: str = "text"
    excluded_routes: tuple[str, ...] = DEFAULT_EXCLUDED
    max_series: int = 2000
    server_timing: bool = True
    llm_parsing: bool = True
    llm_provider: str | None = None
    estimate_output_tokens: bool = True
    max_model_names: int = 100
    resources: tuple[str, ...] = ("process", "system", "gpu")
    loop_lag_interval: float = 0.5
    workers_dir: str | None = None
    workers_interval: float = 1.0
    otlp_per_worker: bool = False
    mcp: bool = True
    mcp_session_idle_timeout: float = 1800.0
    mcp_resource_uri: bool = False
    app_metrics_path: str | None = None
    upstream_calls: bool = True
    upstream_hosts: tuple[str, ...] = ()
    upstream_providers: tuple[str, ...] = ()
    cost: bool = True
    prices_file: str | None = None
    tenant_header: str | None = None
    tenant_baggage: str | None = None
    tenant_from: Callable[[dict], str | None] | None = None
    max_tenants: int = 100
    tenant_api_key_secret: str | None = field(default=None, repr=False)  # never printed
    disabled: bool = False

    @property
    def tracing(self) -> bool:
        return self.traces_exporter != ("none",)


class Invalid(ValueError):
    """Raised by a parser with what it accepts; ``Option.parse`` turns it into a ConfigError."""


# -- parsers: each takes a variable's text or a keyword's value -----------------------------------
def text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("expected a non-empty string")
    return value.strip()


def _number(value: object, convert: Callable[[str], float]) -> object:
    """A keyword's value as it is, a variable's text converted; None for bools and text that is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return convert(value.strip())
        except ValueError:
            return None
    return value


def whole_number(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        number = _number(value, int)
        if not isinstance(number, int) or not low <= number <= high:
            raise Invalid(f"expected a whole number from {low} to {high}")
        return number
    return parse


def seconds(value: object) -> float:
    number = _number(value, float)
    if not isinstance(number, (int, float)) or not math.isfinite(number) or number < 0:
        raise Invalid("expected seconds as a number >= 0 (0 turns it off)")
    return float(number)


def interval(value: object) -> float:
    number = _number(value, float)
    if not isinstance(number, (int, float)) or not math.isfinite(number) or not 0.05 <= number <= 60:
        raise Invalid("expected seconds from 0.05 to 60")
    return float(number)


def path(value: object) -> str:
    if isinstance(value, str) and value.strip().startswith("/") and " " not in value.strip():
        return value.strip()
    raise Invalid("expected a URL path such as /metrics")


def flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise Invalid("expected true or false")


def _items(value: object) -> list[str]:
    """A comma-separated string or a list/tuple of strings, as a list of stripped items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise Invalid("expected a comma-separated string or a list of strings")


def choice(allowed: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        raise Invalid(f"expected one of {', '.join(allowed)}")
    return parse


def choices(allowed: tuple[str, ...]) -> Callable[[object], tuple[str, ...]]:
    """A list of choices; "none" alone stands for the empty choice."""
    def parse(value: object) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(item.lower() for item in _items(value)))
        bad = [item for item in items if item not in allowed]
        if bad or not items:
            raise Invalid(f"{', '.join(bad) or 'empty'} is not one of {', '.join(allowed)} "
                          "(a comma-separated list)")
        return ("none",) if "none" in items else items
    return parse


def installed_names(group: str) -> list[str]:
    """The names installed packages register in an entry point group (what the SDK's configuration can load)."""
    from importlib.metadata import entry_points

    return sorted({entry.name for entry in entry_points(group=group)})


def exporters(signal: str, builtin: tuple[str, ...]) -> Callable[[object], tuple[str, ...]]:
    """A list of exporter names: ours, or any that an installed package registers for the SDK's configuration
    (the ``opentelemetry_<signal>_exporter`` entry points: a vendor's exporter), as the SDK itself accepts."""
    group = f"opentelemetry_{signal}_exporter"

    def parse(value: object) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(item if item.lower() not in builtin else item.lower() for item in _items(value)))
        if not items:
            raise Invalid(f"empty is not one of {', '.join(builtin)} (a comma-separated list)")
        unknown = [item for item in items if item not in builtin]
        if unknown:
            installed = installed_names(group)
            bad = [item for item in unknown if item not in installed]
            if bad:
                others = ", ".join(name for name in installed if name not in builtin) or "none installed"
                raise Invalid(f"{', '.join(bad)} is unknown; expected one of {', '.join(builtin)}, or an installed "
                              f"exporter's name (entry point group {group}: {others}); a comma-separated list")
        return ("none",) if "none" in items else items
    return parse


def paths(value: object) -> tuple[str, ...]:
    items = tuple(_items(value))
    bad = [item for item in items if not item.startswith("/")]
    if bad:
        raise Invalid(f"{bad[0]!r} does not start with '/'; expected a comma-separated list of paths, "
                      "'/x/*' for a prefix")
    return items


def hosts(value: object) -> tuple[str, ...]:
    items = tuple(item.lower() for item in _items(value))
    bad = [item for item in items if "/" in item or ":" in item or " " in item]
    if bad:
        raise Invalid(f"{bad[0]!r} is not a host name; expected a comma-separated list such as "
                      "api.openai.com,llm.internal")
    return items


def host_names(value: object) -> tuple[str, ...]:
    """``host=name`` pairs (a gen_ai.provider.name per upstream host)."""
    items = tuple(item.replace(" ", "") for item in _items(value))
    bad = [item for item in items if item.count("=") != 1 or not all(item.split("="))]
    if bad:
        raise Invalid(f"{bad[0]!r} is not host=name; expected a comma-separated list such as "
                      "llm.internal=openai,gpu-box=vllm")
    return tuple(f"{host.lower()}={name}" for host, name in (item.split("=") for item in items))


def header_name(value: object) -> str:
    token = text(value).lower()
    if any(ch in token for ch in ' ()<>@,;:\\"/[]?={}\t'):
        raise Invalid("expected an HTTP header name such as x-tenant-id")
    return token


def secret(value: object) -> str:
    if not isinstance(value, str) or len(value.strip()) < 16:
        raise Invalid("expected a secret of at least 16 characters, the same on every worker (never logged)")
    return value.strip()


def resolver(value: object) -> Callable[[dict], str | None]:
    from .llm.tenant import resolver_from

    try:
        return resolver_from(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


EXAMPLE_PRICES_FILE = str(Path(__file__).parent / "llm" / "prices_example.json")


def url(value: object) -> str:
    if isinstance(value, str) and value.strip().startswith(("http://", "https://")) and len(value.strip()) > 8:
        return value.strip()
    raise Invalid("expected a URL such as http://127.0.0.1:4317 (http:// for plaintext, https:// for TLS)")


@dataclass(frozen=True)
class Option:
    attr: str  # the Settings field and the setup() keyword
    var: str  # the environment variable
    parse: Callable[[object], Any]
    example: str  # a valid value, as a variable's text: the fix every error suggests
    meaning: str

    def read(self, value: object, *, from_env: bool) -> Any:
        """The parsed value, or a ConfigError naming the source, the value, what is accepted and a fix."""
        try:
            return self.parse(value)
        except Invalid as exc:
            raise ConfigError(f"{self.source(from_env)}={value!r} is not valid: {exc}. "
                              f"Fix: {self.fix(from_env)}") from None

    def source(self, from_env: bool) -> str:
        return self.var if from_env else self.attr

    def fix(self, from_env: bool) -> str:
        """The example as a variable's text, or as the Python value a keyword would take (text for a callable)."""
        if from_env:
            return f"{self.var}={self.example}"
        value = self.parse(self.example)
        return f"{self.attr}={(self.example if callable(value) else value)!r}"


OPTIONS: tuple[Option, ...] = (
    Option("service_name", "OTEL_SERVICE_NAME", text, "my-llm-api",
           "service.name of the resource (default: the served app's module, e.g. main for main:app)"),
    Option("service_version", "OTEL_SERVICE_VERSION", text, "1.0.0", "service.version of the resource"),
    Option("metrics_exporters", "OTEL_METRICS_EXPORTER", exporters("metrics", METRICS_EXPORTERS), "prometheus",
           "prometheus (the embedded endpoint), otlp (the default once an OTLP endpoint is set), console, none, "
           "or an installed exporter's name; a list"),
    Option("traces_exporter", "OTEL_TRACES_EXPORTER", exporters("traces", TRACES_EXPORTERS), "otlp",
           "none, otlp, console, or an installed exporter's name; a list"),
    Option("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", url, "http://127.0.0.1:4317",
           "collector address; turns OTLP on"),
    Option("otlp_protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", choice(OTLP_PROTOCOLS), "grpc",
           "grpc or http/protobuf"),
    Option("prometheus_host", "OTEL_EXPORTER_PROMETHEUS_HOST", text, "127.0.0.1",
           "embedded endpoint address; must be an address of this machine"),
    Option("prometheus_port", "OTEL_EXPORTER_PROMETHEUS_PORT", whole_number(1, 65535), "9464",
           "embedded endpoint port"),
    Option("export_interval_ms", "OTEL_METRIC_EXPORT_INTERVAL", whole_number(100, 86_400_000), "60000",
           "OTLP push interval, ms"),
    Option("export_timeout_ms", "OTEL_METRIC_EXPORT_TIMEOUT", whole_number(100, 600_000), "10000",
           "OTLP push timeout, ms"),
    Option("disabled", "OTEL_SDK_DISABLED", flag, "false", "true turns all of it off"),
    Option("slow_request_seconds", "OTEL_LLM_METRICS_SLOW_REQUEST_SECONDS", seconds, "10",
           "log a WARNING above this duration (time to first byte for streams); 0 = off"),
    Option("log_format", "OTEL_LLM_METRICS_LOG_FORMAT", choice(LOG_FORMATS), "json",
           "text leaves logging as the app and server set it; json: one JSON object per line (time, level, "
           "logger, message, trace_id, span_id, request_id, http.route), app and server lines alike "
           "(docs/opentelemetry-setup.md)"),
    Option("excluded_routes", "OTEL_LLM_METRICS_EXCLUDED_ROUTES", paths, "/health,/internal/*",
           "paths not measured; '/x/*' for a prefix"),
    Option("max_series", "OTEL_LLM_METRICS_MAX_SERIES", whole_number(1, 1_000_000), "2000",
           "attribute sets per instrument before overflow"),
    Option("server_timing", "OTEL_LLM_METRICS_SERVER_TIMING", flag, "true",
           "add Server-Timing to non-streamed responses"),
    Option("llm_parsing", "OTEL_LLM_METRICS_LLM_PARSING", flag, "true",
           "parse LLM requests and responses for GenAI metrics; false keeps only HTTP metrics"),
    Option("llm_provider", "OTEL_LLM_METRICS_PROVIDER_NAME", text, "openai",
           "gen_ai.provider.name to report; default by API shape: openai, anthropic for /v1/messages, "
           "ollama for /api/*, gcp.gemini or gcp.vertex_ai for generateContent"),
    Option("estimate_output_tokens", "OTEL_LLM_METRICS_ESTIMATE_OUTPUT_TOKENS", flag, "true",
           "when a stream reports no usage, count output tokens from its content deltas (one per delta), "
           "marked gen_ai.usage.estimated=true; false records none"),
    Option("max_model_names", "OTEL_LLM_METRICS_MAX_MODEL_NAMES", whole_number(1, 100_000), "100",
           "distinct model names kept per attribute; later ones become _OTHER"),
    Option("resources", "OTEL_LLM_METRICS_RESOURCES", choices(RESOURCE_GROUPS), "process,system",
           "resource metric groups: process, system, gpu (only where NVML answers); none"),
    Option("loop_lag_interval", "OTEL_LLM_METRICS_LOOP_LAG_INTERVAL", seconds, "0.5",
           "event-loop lag sampling interval, seconds; 0 turns it off"),
    Option("prometheus_port_attempts", "OTEL_LLM_METRICS_PROMETHEUS_PORT_ATTEMPTS", whole_number(1, 1024), "16",
           "ports tried upwards from the Prometheus port when another program holds it"),
    Option("shutdown_timeout_s", "OTEL_LLM_METRICS_SHUTDOWN_TIMEOUT", seconds, "5",
           "bound on the whole exit, seconds: every way out (lifespan, the server's shutdown, atexit) "
           "waits for the final push only until this long after the first began"),
    Option("workers_dir", "OTEL_LLM_METRICS_WORKERS_DIR", text, "/tmp/otel-llm-metrics",
           "where the workers of a server hand their numbers to the one that serves the endpoint "
           "(one subdirectory per server); default: otel-llm-metrics-UID in the temp directory"),
    Option("workers_interval", "OTEL_LLM_METRICS_WORKERS_INTERVAL", interval, "1",
           "how often each worker hands its numbers over, seconds: how fresh the endpoint is; with no Prometheus "
           "endpoint (OTLP only), the push interval by default"),
    Option("otlp_per_worker", "OTEL_LLM_METRICS_OTLP_PER_WORKER", flag, "true",
           "over OTLP, each worker of a multi-worker server pushes its own stream (its own service.instance.id); "
           "by default the worker holding the server's lock pushes all workers' numbers merged, under one id per "
           "server (docs/shipping.md)"),
    Option("mcp", "OTEL_LLM_METRICS_MCP", flag, "true",
           "measure MCP (JSON-RPC over streamable HTTP), served and called: tool calls, errors, sessions "
           "(docs/mcp.md)"),
    Option("mcp_session_idle_timeout", "OTEL_LLM_METRICS_MCP_SESSION_IDLE_TIMEOUT", seconds, "1800",
           "an MCP session with no request for this long ends at its last request, seconds; 0: only DELETE ends it"),
    Option("mcp_resource_uri", "OTEL_LLM_METRICS_MCP_RESOURCE_URI", flag, "false",
           "opt-in: mcp.resource.uri on resources/read and subscribe (capped like model names)"),
    Option("app_metrics_path", "OTEL_LLM_METRICS_APP_METRICS_PATH", path, "/metrics",
           "also serve the endpoint at this path on the app's own port (off by default: that port "
           "is often public)"),
    Option("upstream_calls", "OTEL_LLM_METRICS_UPSTREAM_CALLS", flag, "true",
           "measure the LLM calls this app makes, at the HTTP client (httpx, httpx2: the transport of the "
           "openai, anthropic, google-genai, ollama, mistralai and groq SDKs and of LiteLLM)"),
    Option("upstream_hosts", "OTEL_LLM_METRICS_UPSTREAM_HOSTS", hosts, "api.openai.com,llm.internal",
           "only calls to these hosts count as LLM calls (default: any host whose path is an LLM API shape)"),
    Option("upstream_providers", "OTEL_LLM_METRICS_UPSTREAM_PROVIDERS", host_names, "llm.internal=openai",
           "gen_ai.provider.name per upstream host, over the built-in table (api.openai.com=openai, ...)"),
    Option("cost", "OTEL_LLM_METRICS_COST", flag, "true",
           "USD per LLM call, served and made, from genai-prices' table (loaded in the background at the first "
           "call) and the prices file; false never imports the table"),
    Option("prices_file", "OTEL_LLM_METRICS_PRICES_FILE", text, EXAMPLE_PRICES_FILE,
           "a JSON file of your own prices (USD per million tokens, per model), over the table: "
           "self-hosted and fine-tuned models (docs/cost.md)"),
    Option("tenant_header", "OTEL_LLM_METRICS_TENANT_HEADER", header_name, "x-tenant-id",
           "the request header that names the tenant (tenant.id)"),
    Option("tenant_baggage", "OTEL_LLM_METRICS_TENANT_BAGGAGE", text, "tenant.id",
           "the W3C baggage entry that names the tenant"),
    Option("tenant_from", "OTEL_LLM_METRICS_TENANT_FROM", resolver,
           "otel_llm_metrics.llm.tenant:from_request_state",
           "module:function (or a callable) given the ASGI scope, returning the tenant or None; asked at the "
           "start and again at the end of a request"),
    Option("max_tenants", "OTEL_LLM_METRICS_MAX_TENANTS", whole_number(1, 100_000), "100",
           "distinct tenant.id values kept; later ones become _OTHER"),
    Option("tenant_api_key_secret", "OTEL_LLM_METRICS_TENANT_API_KEY_SECRET", secret,
           "change-me-to-32-random-characters",
           "opt-in: the tenant is key- and 12 hex digits of HMAC-SHA256(this secret, the caller's API key), "
           "when nothing else names it; the key itself is never an attribute"),
)
OPTIONS_BY_ATTR = {option.attr: option for option in OPTIONS}
_OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from the environment, then keyword overrides (which win); raises ConfigError."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    from_env: set[str] = set()
    for option in OPTIONS:
        raw = env.get(option.var)
        if raw is not None and raw.strip() != "":
            values[option.attr] = option.read(raw, from_env=True)
            from_env.add(option.attr)
    if "metrics_exporters" not in values and any(env.get(v) for v in _OTLP_ENDPOINT_VARS):
        values["metrics_exporters"] = ("otlp",)
    for key, value in overrides.items():
        option = OPTIONS_BY_ATTR.get(key)
        if option is None:
            known = ", ".join(sorted(OPTIONS_BY_ATTR))
            raise ConfigError(f"unknown setting {key!r}: expected one of {known}. Fix: remove {key}=...")
        if value is not None:
            values[key] = option.read(value, from_env=False)
            from_env.discard(key)
    if overrides.get("otlp_endpoint") and "metrics_exporters" not in overrides:
        values["metrics_exporters"] = tuple(dict.fromkeys((*values.get("metrics_exporters", ()), "otlp")))
    if "workers_interval" not in values and "prometheus" not in values.get("metrics_exporters", ("prometheus",)) \
            and not values.get("app_metrics_path"):
        # Nothing scrapes: the workers' hand-over only feeds the merged OTLP push, so once per push interval is
        # fresh enough (every second cost more CPU than the per-worker pushes it replaces: docs/shipping.md)
        values["workers_interval"] = max(1.0, values.get("export_interval_ms", Settings.export_interval_ms) / 1000)
    settings = replace(Settings(), **values)
    _check_prometheus_host(settings, from_env="prometheus_host" in from_env)
    _check_workers_dir(settings, from_env="workers_dir" in from_env)
    _check_prices_file(settings, from_env="prices_file" in from_env)
    return settings


def _check_prices_file(settings: Settings, *, from_env: bool) -> None:
    """Read and validate the prices file now: a broken one stops start-up, naming the file, the entry and a fix."""
    if settings.prices_file is None:
        return
    from .llm.prices import PricesFileError, read_overrides

    try:
        read_overrides(settings.prices_file)
    except PricesFileError as exc:
        raise ConfigError(f"{OPTIONS_BY_ATTR['prices_file'].source(from_env)}: {exc}") from None


def _check_workers_dir(settings: Settings, *, from_env: bool) -> None:
    """The workers write there once they serve: a directory they can never write fails now."""
    if settings.workers_dir is None:
        return
    option = OPTIONS_BY_ATTR["workers_dir"]
    try:
        os.makedirs(settings.workers_dir, mode=0o700, exist_ok=True)
        if not os.access(settings.workers_dir, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        raise ConfigError(f"{option.source(from_env)}={settings.workers_dir!r} is not valid: cannot write "
                          f"there ({exc}); expected a writable directory. Fix: {option.fix(from_env)}") from None


def _check_prometheus_host(settings: Settings, *, from_env: bool) -> None:
    """The embedded endpoint binds lazily, at the first request: an address it can never bind fails now."""
    if "prometheus" not in settings.metrics_exporters:
        return
    option = OPTIONS_BY_ATTR["prometheus_host"]
    try:
        infos = socket.getaddrinfo(settings.prometheus_host, 0, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(f"{option.source(from_env)}={settings.prometheus_host!r} is not valid: the embedded "
                          f"Prometheus endpoint cannot listen there ({exc}); expected an address of this machine. "
                          f"Fix: {option.fix(from_env)}") from None


def settings_table() -> str:
    """The configuration table of the docs, from the same list the parser uses."""
    defaults = {f.name: f.default for f in fields(Settings)}
    rows = ["| variable | `setup()` keyword | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        default = defaults[option.attr]
        if isinstance(default, tuple):
            shown = ",".join(default)
        else:
            shown = "-" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        rows.append(f"| `{option.var}` | `{option.attr}` | `{shown}` | {option.meaning} |")
    return "\n".join(rows)
