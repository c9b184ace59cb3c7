"""Grafana dashboards and provisioning, checked as data (no Grafana server runs here)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
sys.path.insert(0, str(ROOT / "scripts"))

import build_dashboards  # noqa: E402


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted((GRAFANA / "dashboards").glob("*.json"))}


def test_committed_dashboards_are_what_the_builder_makes():
    built = {f"{uid}.json": build_dashboards.render(d) for uid, d in build_dashboards.dashboards().items()}
    committed = {path.name: path.read_text() for path in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == built, "run: python scripts/build_dashboards.py"


def test_ids_uids_datasources_and_variables_resolve():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yaml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    assert uids == {"prometheus", "tempo"}
    prometheus = next(d for d in datasources["datasources"] if d["uid"] == "prometheus")
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"] == "tempo"
    found = dashboards()
    assert len(found) == 4
    assert len({d["uid"] for d in found.values()}) == 4, "dashboard uids are unique"
    for name, dashboard in found.items():
        panel_ids = [p["id"] for p in dashboard["panels"]]
        assert len(panel_ids) == len(set(panel_ids)), name
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        assert "job" in defined, f"{name}: a service variable"
        for item in [*dashboard["panels"], *dashboard["templating"]["list"]]:
            assert item["datasource"]["uid"] in uids, name
        for panel in dashboard["panels"]:
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids
                used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__interval"}
                assert used <= defined, f"{name}: {panel['title']} uses undefined {used - defined}"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
