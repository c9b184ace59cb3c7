"""Bad settings fail at start-up with a message naming the variable, the value and a fix that works."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from otel_llm_metrics import ConfigError, Registry, Telemetry, load_settings, setup
from otel_llm_metrics.config import OPTIONS, settings_table

ROOT = Path(__file__).resolve().parents[1]
# One unusable value per setting: as a variable's text (None: every text is a valid value there) and
# as a keyword's Python value.
BAD = {
    "service_name": (None, 5), "service_version": (None, ["1"]), "metrics_exporters": ("statsd", ("statsd",)),
    "traces_exporter": ("jaeger", "jaeger"), "otlp_endpoint": ("collector:4317", "collector:4317"),
    "otlp_protocol": ("http/json", "http/json"), "prometheus_host": ("no-such-host.invalid", "no-such-host.invalid"),
    "prometheus_port": ("ninety", 70000), "export_interval_ms": ("0", 0), "export_timeout_ms": ("1e3", 1.5),
    "disabled": ("yes please", "maybe"), "slow_request_seconds": ("-1", float("nan")),
    "log_format": ("xml", "xml"),
    "excluded_routes": ("/health,metrics", ["health"]), "max_series": ("0", True), "server_timing": ("2", 2),
    "llm_parsing": ("sometimes", None),
    "estimate_output_tokens": ("approx", "yes please"), "llm_provider": (None, 3), "max_model_names": ("-5", -5),
    "resources": ("cpu", "gpu,cpu"), "loop_lag_interval": ("x", "x"), "prometheus_port_attempts": ("0", 2000),
    "shutdown_timeout_s": ("inf", -1), "workers_dir": ("/dev/null/workers", "/dev/null/workers"),
    "workers_interval": ("0", 600), "otlp_per_worker": ("per-worker", 3),
    "mcp": ("sometimes", 2), "mcp_session_idle_timeout": ("-1", "forever"), "mcp_resource_uri": ("uris", 5),
    "app_metrics_path": ("metrics", "/my metrics"),
    "upstream_calls": ("sometimes", 1), "upstream_hosts": ("https://api.openai.com", ["api.openai.com:443"]),
    "upstream_providers": ("llm.internal", ["llm.internal:openai"]),
    "cost": ("maybe", 2), "prices_file": (None, 5), "tenant_header": ("x tenant", 5), "tenant_baggage": (None, 5),
    "tenant_from": ("no_such_module:tenant", "no_such_module:tenant"), "max_tenants": ("0", 0),
    "tenant_api_key_secret": ("short", "short"),
}
_FIX = re.compile(r"Fix: (\w+)=(.*)$")


# A suggested endpoint (http://collector:4317) answers nobody here: stopping need not wait the default 5 s for it.
QUICK_EXIT = {"OTEL_LLM_METRICS_SHUTDOWN_TIMEOUT": "0.5"}


def _start(settings) -> None:
    """What start-up does with settings: build the Telemetry (readers, resource, tracer), then stop it."""
    Telemetry(settings, Registry()).shutdown()


def test_every_setting_has_a_bad_value_here():
    assert set(BAD) == {option.attr for option in OPTIONS}


@pytest.mark.parametrize("option", [o for o in OPTIONS if BAD[o.attr][0] is not None], ids=lambda option: option.var)
def test_every_suggested_fix_for_a_variable_starts(option):
    bad = BAD[option.attr][0]
    with pytest.raises(ConfigError) as caught:
        load_settings({option.var: bad})
    message = str(caught.value)
    assert message.startswith(f"{option.var}={bad!r} is not valid: ")
    var, value = _FIX.search(message).groups()
    assert var == option.var
    _start(load_settings({**QUICK_EXIT, var: value}))


@pytest.mark.parametrize("option", [o for o in OPTIONS if BAD[o.attr][1] is not None], ids=lambda option: option.attr)
def test_every_suggested_fix_for_a_keyword_starts(option):
    bad = BAD[option.attr][1]
    with pytest.raises(ConfigError) as caught:
        load_settings({}, **{option.attr: bad})
    message = str(caught.value)
    assert message.startswith(f"{option.attr}={bad!r} is not valid: ")
    keyword, value = _FIX.search(message).groups()
    assert keyword == option.attr
    _start(load_settings(QUICK_EXIT, **{keyword: ast.literal_eval(value)}))


def test_keywords_and_variables_share_one_parser():
    """The same text means the same thing from either side; Python values are accepted as keywords."""
    assert load_settings({}, resources="gpu").resources == ("gpu",) == load_settings(
        {"OTEL_LLM_METRICS_RESOURCES": "gpu"}).resources
    assert load_settings({}, resources=["process", "system"]).resources == ("process", "system")
    assert load_settings({}, max_series="50").max_series == 50 == load_settings({}, max_series=50).max_series
    assert load_settings({}, server_timing="off").server_timing is False
    assert load_settings({}, loop_lag_interval=1).loop_lag_interval == 1.0
    assert load_settings({}, metrics_exporters="prometheus,none").metrics_exporters == ("none",)


@pytest.mark.parametrize("keywords", [{"resources": "gpu", "max_model_names": -5},
                                      {"loop_lag_interval": "x"}, {"export_interval_ms": 0}])
def test_values_the_old_validation_let_through_are_refused(keywords):
    with pytest.raises(ConfigError, match="is not valid"):
        load_settings({}, **keywords)


def test_an_unresolvable_prometheus_host_fails_at_start_up_not_at_the_first_request():
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_PROMETHEUS_HOST='no-such-host.invalid' .* "
                                          r"Fix: OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1"):
        load_settings({"OTEL_EXPORTER_PROMETHEUS_HOST": "no-such-host.invalid"})
    assert load_settings({"OTEL_EXPORTER_PROMETHEUS_HOST": "no-such-host.invalid", "OTEL_METRICS_EXPORTER": "otlp"})


def test_an_uncaught_setup_error_prints_its_message_and_fix_first_without_a_traceback():
    script = "import otel_llm_metrics\notel_llm_metrics.setup(max_series=0)\nprint('app ran')"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and "app ran" not in result.stdout
    first = result.stderr.splitlines()[0]
    assert first == ("otel_llm_metrics: configuration error: max_series=0 is not valid: expected a whole number "
                     "from 1 to 1000000. Fix: max_series=2000"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_caught_setup_error_is_an_ordinary_exception(monkeypatch):
    import otel_llm_metrics.runtime as runtime

    monkeypatch.setattr(runtime, "_current", None)  # as at a program's start
    with pytest.raises(ConfigError, match="max_series=0"):
        setup(max_series=0)


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "abc", "whole number from 1 to 65535"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000", "whole number from 1 to 65535"),
    ("OTEL_METRICS_EXPORTER", "prometheus,zipkin", "zipkin is unknown; expected one of prometheus, otlp"),
    ("OTEL_TRACES_EXPORTER", "jaeger", "expected one of otlp, console, none"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "expected one of grpc, http/protobuf"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317", "expected a URL"),
    ("OTEL_LLM_METRICS_SLOW_REQUEST_SECONDS", "-1", "seconds as a number >= 0"),
    ("OTEL_LLM_METRICS_SLOW_REQUEST_SECONDS", "nan", "seconds as a number >= 0"),
    ("OTEL_LLM_METRICS_MAX_SERIES", "0", "whole number from 1"),
    ("OTEL_LLM_METRICS_EXCLUDED_ROUTES", "/health,metrics", "does not start with '/'"),
    ("OTEL_LLM_METRICS_SERVER_TIMING", "maybe", "expected true or false"),
    ("OTEL_SDK_DISABLED", "yes please", "expected true or false"),
])
def test_invalid_value_names_variable_value_and_what_is_accepted(var, value, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings({var: value})
    message = str(caught.value)
    assert var in message and repr(value) in message and expected in message


def test_defaults_serve_prometheus_on_loopback():
    settings = load_settings({})
    assert settings.metrics_exporters == ("prometheus",)
    assert (settings.prometheus_host, settings.prometheus_port) == ("127.0.0.1", 9464)
    assert not settings.tracing


def test_an_otlp_endpoint_switches_metrics_to_otlp_unless_exporters_are_named():
    assert load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}).metrics_exporters == ("otlp",)
    both = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                          "OTEL_METRICS_EXPORTER": "prometheus,otlp"})
    assert both.metrics_exporters == ("prometheus", "otlp")


def test_keyword_overrides_win_and_are_validated():
    assert load_settings({"OTEL_SERVICE_NAME": "env"}, service_name="kw").service_name == "kw"
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings({}, colour="blue")


def test_setup_refuses_an_app_it_cannot_add_middleware_to():
    async def bare(scope, receive, send):
        pass

    with pytest.raises(ConfigError, match=r"setup\(\)\.instrument\(app\)"):
        setup(bare, metrics_exporters="none")


def test_docs_configuration_table_is_current():
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert settings_table() in docs, "regenerate with: make docs"


def test_sdk_disabled_leaves_the_app_untouched(monkeypatch):
    from starlette.applications import Starlette

    import otel_llm_metrics.runtime as runtime

    monkeypatch.setattr(runtime, "_current", None)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    app = Starlette()
    telemetry = setup(app)
    assert app.user_middleware == [], "no middleware added"
    assert runtime._current is None, "nothing installed globally"
    assert telemetry.settings.metrics_exporters == ("none",)
    telemetry.shutdown()
