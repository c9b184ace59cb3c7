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


def test_kubernetes_example_scrapes_the_one_port_the_app_serves():
    deployment, pod_monitor = yaml.safe_load_all((ROOT / "kubernetes" / "app.yaml").read_text())
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    container = template["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    annotations = template["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == int(env["OTEL_EXPORTER_PROMETHEUS_PORT"]) == ports["metrics"]
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert env["OTEL_EXPORTER_PROMETHEUS_HOST"] == "0.0.0.0", "reachable from the Prometheus pod"
    assert int(env["WEB_CONCURRENCY"]) > 1, "several workers behind the one target"
    assert template["spec"]["terminationGracePeriodSeconds"] > float(env["OTEL_LLM_METRICS_SHUTDOWN_TIMEOUT"])
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert env["OTEL_LLM_METRICS_WORKERS_DIR"] in mounts, "writable with a read-only root filesystem"


def test_dockerfile_runs_several_workers_behind_one_target():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "WEB_CONCURRENCY=2" in dockerfile and "OTEL_EXPORTER_PROMETHEUS_HOST=0.0.0.0" in dockerfile
    compose = yaml.safe_load((ROOT / "compose" / "prometheus.yml").read_text())
    app_jobs = [job for job in compose["scrape_configs"] if job["job_name"] == "app-embedded"]
    assert app_jobs[0]["static_configs"][0]["targets"] == ["app:9464"]
