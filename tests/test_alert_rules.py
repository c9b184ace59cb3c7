"""Recording and alert rules checked by promtool: every alert fires in one world and not in another."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.integration.servers import require_binary

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "prometheus" / "rules"


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _render(template: str, labels: dict[str, str]) -> str:
    """Annotations use only {{ $labels.x }}: substitute them as Prometheus will."""
    assert "$value" not in template, "annotations stay label-only so that tests can state them"
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def test_promtool_check_rules():
    result = subprocess.run([require_binary("promtool"), "check", "rules", *map(str, sorted(RULES.glob("*.yml")))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_the_bad_world_and_not_in_the_good(tmp_path):
    worlds = yaml.safe_load((ROOT / "prometheus" / "tests" / "worlds.yml").read_text())
    alerts = _alerts()
    worlds["rule_files"] = [str(RULES / "recording.yml"), str(RULES / "alerts.yml")]
    named = {test["name"]: test for test in worlds["tests"]}
    tested = set()
    for case in named["bad world, every alert fires"]["alert_rule_test"]:
        rule = alerts[case["alertname"]]
        for expected in case["exp_alerts"]:
            labels = {k: str(v) for k, v in expected["exp_labels"].items()}
            assert labels["severity"] == rule["labels"]["severity"]
            expected["exp_annotations"] = {k: _render(v, labels) for k, v in rule["annotations"].items()}
        tested.add(case["alertname"])
    silent = {case["alertname"] for case in named["good world, no alert fires"]["alert_rule_test"]
              if case["exp_alerts"] == []}
    assert tested == silent == set(alerts), "each alert needs a firing and a silent case"
    for rule in alerts.values():
        assert rule["annotations"].get("runbook") and rule["annotations"].get("summary"), rule["alert"]
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(yaml.safe_dump(worlds, sort_keys=False))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(test_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
