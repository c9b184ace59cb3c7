"""OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: the calls made follow the GenAI repository's newest
names (per-type token counters, per-call token histograms, inference durations), and nothing under the released
names they replace. Every transcript, through the real client hook."""

from __future__ import annotations

import httpx2
import pytest

from otel_llm_metrics import catalogue as c
from otel_llm_metrics.client import instrumentors
from tests.client.test_wire import _read, _transport
from tests.llm.test_transcripts import HERE, TRUTH


@pytest.fixture
def latest(make_telemetry, monkeypatch):
    monkeypatch.setenv(c.SEMCONV_OPT_IN, "http," + c.GEN_AI_LATEST_EXPERIMENTAL)
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    yield telemetry
    instrumentors.uninstall()


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_every_transcript_under_the_latest_names(latest, name):
    truth, body = TRUTH[name], (HERE / name).read_bytes()
    latest.registry.gen_ai.reset()
    read, raised = _read(httpx2, _transport(httpx2, [body[: len(body) // 2], body[len(body) // 2:]]), truth["path"])
    assert raised is None and read == body
    view = latest.collect()
    for replaced in c.REPLACED_UNDER_OPT_IN:
        assert not view.points(replaced.name), f"{replaced.name} is replaced under the opt-in"
    (duration,) = view.points(c.GEN_AI_CLIENT_INFERENCE_DURATION.name)
    assert duration.attributes["gen_ai.provider.name"] == truth["provider"]
    assert duration.attributes.get("error.type") == ("_OTHER" if truth["error"] else None)
    expected = {c.GEN_AI_CLIENT_USAGE_INPUT: truth["input"], c.GEN_AI_CLIENT_USAGE_OUTPUT: truth["output"],
                c.GEN_AI_CLIENT_USAGE_CACHE_READ: truth["cache_read"],
                c.GEN_AI_CLIENT_USAGE_CACHE_WRITE: truth["cache_creation"],
                c.GEN_AI_CLIENT_USAGE_REASONING: None if truth["estimated"] else truth["reasoning"]}
    for spec, count in expected.items():
        (point,) = view.points(spec.name)
        assert point.value == (count or 0), spec.name
        assert point.attributes[c.GEN_AI_TOKEN_MODALITY] == "unknown"
        assert point.attributes.get("gen_ai.response.model") == truth["model"]
    (output,) = view.points(c.GEN_AI_CLIENT_USAGE_OUTPUT.name)
    assert output.attributes.get(c.GEN_AI_ESTIMATED) == (True if truth["estimated"] else None)
    for spec, count in ((c.GEN_AI_CLIENT_OPERATION_INPUT_TOKENS, truth["input"]),
                        (c.GEN_AI_CLIENT_OPERATION_OUTPUT_TOKENS, truth["output"])):
        (point,) = view.points(spec.name)
        assert (point.count, point.sum) == (1, count or 0), spec.name
        assert point.attributes.get("error.type") == duration.attributes.get("error.type")


def test_the_default_is_the_released_names(make_telemetry, monkeypatch):
    monkeypatch.delenv(c.SEMCONV_OPT_IN, raising=False)
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    try:
        name = "openai_chat_stream_usage.sse"
        _read(httpx2, _transport(httpx2, [(HERE / name).read_bytes()]), TRUTH[name]["path"])
        view = telemetry.collect()
        assert view.points(c.GEN_AI_CLIENT_DURATION.name) and view.points(c.GEN_AI_CLIENT_TOKENS.name)
        assert not [n for n in view.by_name if n in {s.name for s in c.LATEST_EXPERIMENTAL}]
    finally:
        instrumentors.uninstall()
