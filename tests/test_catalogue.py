"""One catalogue: the docs show exactly what the code publishes."""

from __future__ import annotations

from pathlib import Path

from otel_llm_metrics import catalogue


def test_docs_catalogue_is_current():
    page = (Path(__file__).resolve().parents[1] / "docs" / "catalogue.md").read_text(encoding="utf-8")
    assert catalogue.markdown_table() in page, "regenerate with: make docs"
    assert catalogue.markdown_table(catalogue.LATEST_EXPERIMENTAL) in page, "regenerate with: make docs"


def test_the_opt_in_replaces_the_calls_made_names_and_keeps_every_other():
    default, latest = catalogue.published(False), catalogue.published(True)
    assert default == catalogue.ALL
    assert {s.name for s in default} - {s.name for s in latest} == {s.name for s in catalogue.REPLACED_UNDER_OPT_IN}
    assert {s.name for s in latest} - {s.name for s in default} == {s.name for s in catalogue.LATEST_EXPERIMENTAL}
    assert len({s.name for s in latest}) == len(latest)
    assert catalogue.gen_ai_latest_experimental({"OTEL_SEMCONV_STABILITY_OPT_IN": "http, gen_ai_latest_experimental"})
    assert not catalogue.gen_ai_latest_experimental({"OTEL_SEMCONV_STABILITY_OPT_IN": "http"})
    assert not catalogue.gen_ai_latest_experimental({})


def test_names_are_unique_and_histograms_have_explicit_buckets():
    names = [spec.name for spec in catalogue.ALL]
    assert len(names) == len(set(names))
    for spec in catalogue.ALL:
        if spec.kind is catalogue.Kind.HISTOGRAM:
            assert spec.buckets and list(spec.buckets) == sorted(spec.buckets), spec.name


def test_prometheus_names_follow_the_exporter_rules():
    assert catalogue.REQUEST_DURATION.prometheus_name == "http_server_request_duration_seconds"
    assert catalogue.RESPONSE_BODY_SIZE.prometheus_name == "http_server_response_body_size_bytes"
    assert catalogue.STREAMS.prometheus_name == "http_server_streams_total"
    assert catalogue.ACTIVE_REQUESTS.prometheus_name == "http_server_active_requests"
