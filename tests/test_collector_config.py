"""The Collector configs, checked structurally (no otelcol with an OTLP receiver installs here).

Each destination file is composed with base.yaml the way `otelcol --config a --config b` does
(maps merge, lists are replaced), then every pipeline must name defined components of types that
otelcol-contrib has, connectors must be both exporter and receiver, memory_limiter must come
first and batch after it, and every ${...} placeholder must be well formed.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[1] / "collector-config"
KNOWN = json.loads((CONFIG / "components.json").read_text())
DESTINATIONS = ["prometheus.yaml", "prometheus-remote-write.yaml", "tempo.yaml", "datadog.yaml", "cloudwatch.yaml",
                "gateway/agent.yaml"]
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
WELL_FORMED = re.compile(r"env:[A-Z_][A-Z0-9_]*(:-[^}]*)?")


def merge(base: dict, overlay: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load(*names: str) -> dict:
    config: dict = {}
    for name in names:
        config = merge(config, yaml.safe_load((CONFIG / name).read_text()))
    return config


def kind(component_id: str) -> str:
    return component_id.split("/", 1)[0]


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_composed_config_is_consistent(destination):
    config = load("base.yaml", destination)
    pipelines = config["service"]["pipelines"]
    assert pipelines, "a destination adds at least one pipeline"
    connectors = set(config.get("connectors") or {})
    as_exporter, as_receiver = set(), set()
    for name, pipeline in pipelines.items():
        assert kind(name) in ("traces", "metrics", "logs"), name
        for section, key in (("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")):
            for component in pipeline[key]:
                if component in connectors:
                    (as_exporter if section == "exporters" else as_receiver).add(component)
                    assert kind(component) in KNOWN["connectors"], component
                    continue
                assert component in (config.get(section) or {}), f"{name}: {component} is not defined"
                assert kind(component) in KNOWN[section], f"{component} is not an otelcol-contrib {section[:-1]}"
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter" and "batch" in processors[1:], f"{name}: {processors}"
    assert as_exporter == as_receiver == connectors, "every connector is an exporter and a receiver"
    for extension in config["service"]["extensions"]:
        assert extension in config["extensions"] and kind(extension) in KNOWN["extensions"]
    assert "health_check" in config["service"]["extensions"]


def test_destinations_compose_together_without_clobbering():
    config = load("base.yaml", "prometheus.yaml", "tempo.yaml", "datadog.yaml", "cloudwatch.yaml")
    assert {"metrics/prometheus", "traces/tempo", "traces/datadog", "metrics/datadog",
            "metrics/cloudwatch"} <= set(config["service"]["pipelines"])


def test_placeholders_are_well_formed_and_secrets_come_from_the_environment():
    for path in CONFIG.rglob("*.yaml"):
        text = path.read_text()
        for inner in PLACEHOLDER.findall(text):
            assert WELL_FORMED.fullmatch(inner), f"{path.name}: ${{{inner}}}"
        assert not re.search(r"(?<![$\w])\$[A-Z_]", text), f"{path.name}: bare $VAR (use ${{env:VAR}})"
    datadog = (CONFIG / "datadog.yaml").read_text()
    assert "key: ${env:DD_API_KEY}" in datadog


def test_ports_agree_with_the_app_and_prometheus():
    base = load("base.yaml")
    assert base["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317}")
    assert base["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318}")
    exporter = load("prometheus.yaml")["exporters"]["prometheus"]["endpoint"]
    port = re.search(r":(\d+)\}?$", exporter).group(1)
    compose_prometheus = yaml.safe_load((CONFIG.parent / "compose" / "prometheus.yml").read_text())
    targets = [t for job in compose_prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"otel-collector:{port}" in targets
    assert "app:9464" in targets, "the app's embedded endpoint (OpenTelemetry's default port)"
