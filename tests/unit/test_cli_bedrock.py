"""doctor where boto3/botocore is installed: whether Bedrock's calls are measured, and if not, why and the fix."""

from __future__ import annotations

import dataclasses

import pytest

from otel_llm_metrics.cli import doctor as doctor_module
from otel_llm_metrics.config import Settings

SCOPE = 'otel_scope_name="otel_llm_metrics",otel_scope_version=""'
CALLS = "gen_ai_client_operation_duration_seconds"
BEDROCK = ('error_type="",gen_ai_operation_name="chat",gen_ai_provider_name="aws.bedrock",'
           'gen_ai_request_model="us.anthropic.claude-3-5-haiku-20241022-v1:0",'
           'server_address="bedrock-runtime.us-east-1.amazonaws.com",server_port="443"')
SEEN = "\n".join([f"# TYPE {CALLS} histogram", f'{CALLS}_bucket{{{BEDROCK},{SCOPE},le="1.0"}} 3',
                  f'{CALLS}_bucket{{{BEDROCK},{SCOPE},le="+Inf"}} 3', f"{CALLS}_count{{{BEDROCK},{SCOPE}}} 3",
                  f"{CALLS}_sum{{{BEDROCK},{SCOPE}}} 1.2"]) + "\n"


@pytest.fixture(autouse=True)
def _enabled(monkeypatch):
    monkeypatch.delenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", raising=False)


def test_measured_bedrock_is_info_with_the_calls_seen():
    line = doctor_module.check_bedrock([SEEN], Settings()).line()
    assert line.startswith("INFO Bedrock: boto3 ") and "Bedrock calls measured (otel_llm_metrics_botocore)" in line
    assert line.endswith("; 3 Bedrock call(s) seen (us.anthropic.claude-3-5-haiku-20241022-v1:0)")
    assert doctor_module.check_bedrock(["# nothing\n"], Settings()).line().endswith("; no Bedrock call seen yet")
    assert "seen" not in doctor_module.check_bedrock(None, Settings()).line(), "no endpoint answered: not said"


@pytest.mark.parametrize("value", ["otel_llm_metrics_botocore", "otel_llm_metrics_httpx, otel_llm_metrics_botocore",
                                   "*"])
def test_our_botocore_instrumentor_left_out_is_a_warning_with_the_fix(monkeypatch, value):
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", value)
    check = doctor_module.check_bedrock([SEEN], Settings())
    assert check.advisory and check.ok is False
    assert check.line().startswith("WARN Bedrock: boto3 ") and "its Bedrock calls are not measured: " \
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS leaves out otel_llm_metrics_botocore" in check.line()
    assert "opentelemetry-instrumentation-botocore" in check.line(), "whose numbers are then the only ones"
    assert "Fix: remove otel_llm_metrics_botocore (or *) from OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in check.line()


def test_upstream_calls_off_or_hosts_without_bedrock_are_warnings_and_a_bedrock_host_is_fine():
    off = doctor_module.check_bedrock(None, dataclasses.replace(Settings(), upstream_calls=False)).line()
    assert "(OTEL_LLM_METRICS_UPSTREAM_CALLS=false), Bedrock's included" in off
    assert "Fix: OTEL_LLM_METRICS_UPSTREAM_CALLS=true" in off
    hosts = doctor_module.check_bedrock(None, dataclasses.replace(Settings(), upstream_hosts=("api.openai.com",)))
    assert "OTEL_LLM_METRICS_UPSTREAM_HOSTS (api.openai.com) names no bedrock-runtime host" in hosts.line()
    assert "bedrock-runtime.us-east-1.amazonaws.com" in hosts.fix
    with_bedrock = dataclasses.replace(Settings(), upstream_hosts=("api.openai.com",
                                                                   "bedrock-runtime.eu-west-1.amazonaws.com"))
    assert doctor_module.check_bedrock(None, with_bedrock).ok is True


def test_no_line_without_botocore_and_a_warning_never_fails_the_doctor(monkeypatch, capsys):
    real = doctor_module.metadata.version

    def without_botocore(name: str) -> str:
        if name == "botocore":
            raise doctor_module.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(doctor_module.metadata, "version", without_botocore)
    assert doctor_module.check_bedrock([SEEN], Settings()) is None
    monkeypatch.setattr(doctor_module.metadata, "version", real)
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "otel_llm_metrics_botocore")
    monkeypatch.setattr(doctor_module, "_check_endpoint", lambda url, texts=None: doctor_module.Check(url, True, "ok"))
    monkeypatch.setattr(doctor_module, "check_prices", lambda texts, settings=None: doctor_module.Check(
        "price table", True, "ok", advisory=True))
    assert doctor_module.doctor(["http://127.0.0.1:1/metrics"], None, None) == 0
    assert "WARN Bedrock:" in capsys.readouterr().out
