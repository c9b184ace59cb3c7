"""The local stack's docker-compose.yaml, checked as data (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_images_are_pinned_and_mounts_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"app", "otel-collector", "prometheus", "alertmanager", "tempo", "grafana"}
    for name, service in services.items():
        if "image" in service:
            image, _, tag = service["image"].rpartition(":")
            assert image and tag and tag != "latest" and (tag[0].isdigit() or tag.startswith("v")), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    assert (ROOT / services["app"]["build"] / "Dockerfile").exists()
    for argument in services["otel-collector"]["command"]:
        config = argument.split("=", 1)[1].replace("/etc/otelcol/", "")
        assert (ROOT / "collector-config" / config).exists(), config
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == "/var/lib/grafana/dashboards"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert services["app"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
