"""Bad settings fail at start-up with a message naming the variable, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_llm_metrics import ConfigError, load_settings, setup
from otel_llm_metrics.config import settings_table


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "abc", "whole number from 1 to 65535"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000", "whole number from 1 to 65535"),
    ("OTEL_METRICS_EXPORTER", "prometheus,zipkin", "zipkin is not one of"),
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
    with pytest.raises(ConfigError, match="metrics_exporters"):
        load_settings({}, metrics_exporters=("statsd",))


def test_setup_refuses_an_app_it_cannot_add_middleware_to():
    async def bare(scope, receive, send):
        pass

    with pytest.raises(ConfigError, match=r"setup\(\)\.instrument\(app\)"):
        setup(bare, metrics_exporters="none")


def test_readme_configuration_table_is_current():
    readme = Path("README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "regenerate with: make docs"


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
