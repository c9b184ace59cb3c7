"""Grafana dashboards and provisioning, checked as data (no Grafana server runs here)."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from otel_llm_metrics import catalogue
from otel_llm_metrics.catalogue import Kind
from tests.integration.servers import require_binary

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
    assert len(found) == 7
    assert len({d["uid"] for d in found.values()}) == 7, "dashboard uids are unique"
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


# Label values the panels select on; every other attribute gets one value. "" leaves the label out.
_VALUES = {
    catalogue.ERROR_TYPE: ("", "429"),
    catalogue.STREAM_OUTCOME: ("completed", "client_cancelled"),
    catalogue.GEN_AI_TOKEN_TYPE: ("input", "output"),
    catalogue.GEN_AI_ESTIMATED: ("true",),
    catalogue.POOL_STATE: ("idle", "used"),
    "system.memory.state": ("used",),
    catalogue.RATE_LIMIT_RESOURCE: ("requests", "tokens"),
    catalogue.MCP_METHOD: ("tools/call", "initialize"),
}


def _catalogue_series(chosen: dict | None = None, specs: tuple = catalogue.ALL) -> list[dict]:
    """Series for every catalogue instrument, named and labelled as its Prometheus name and attributes say."""
    chosen = _VALUES if chosen is None else chosen
    series = []
    for spec in specs:
        choices = [[(catalogue.prometheus_label(a), v) for v in chosen.get(a, ("x",))] for a in spec.attributes]
        for combination in itertools.product(*choices):
            labels = ",".join(['job="app"', 'instance="i1"', *(f'{k}="{v}"' for k, v in combination if v)])
            name = spec.prometheus_name
            if spec.kind is Kind.HISTOGRAM:
                for le in [*map(str, spec.buckets), "+Inf"]:
                    series.append({"series": f'{name}_bucket{{{labels},le="{le}"}}', "values": "0+10x15"})
                series.append({"series": f"{name}_count{{{labels}}}", "values": "0+10x15"})
                series.append({"series": f"{name}_sum{{{labels}}}", "values": "0+5x15"})
            else:
                values = "0+10x15" if spec.kind is Kind.COUNTER else "5+0x15"
                series.append({"series": f"{name}{{{labels}}}", "values": values})
    return series


def _offline(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "5m")
    return re.sub(r"\$\w+", ".*", expr)


def test_every_panel_and_variable_has_data_from_series_shaped_as_the_catalogue_says(tmp_path):
    """Offline: names, labels and recording rules agree (tests/integration/test_grafana.py does it with the demo)."""
    queries = []
    for dashboard in dashboards().values():
        for variable in dashboard["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
            assert match, variable["query"]
            queries.append(f"count by ({match.group(2)}) ({_offline(match.group(1))})")
        queries += [_offline(target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
    tests = {"rule_files": [str(ROOT / "prometheus" / "rules" / "recording.yml")], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": _catalogue_series(), "promql_expr_test": [
                 {"expr": f"count({q}) > bool 0 or vector(0)", "eval_time": "14m",
                  "exp_samples": [{"labels": "{}", "value": 1}]} for q in queries]}]}
    test_file = tmp_path / "dashboards.test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(test_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_the_mcp_dashboard_shows_every_mcp_instrument_and_rule_on_both_sides():
    """Every MCP recording rule is read by a panel, and every MCP instrument reaches the MCP dashboard (directly or
    through a rule); served and called panels come in pairs, so each side fills its own rows."""
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "recording.yml").read_text())["groups"][0]["rules"]
    mcp_rules = {rule["record"]: rule["expr"] for rule in rules if "mcp_" in rule["record"]}
    dashboard = dashboards()["otel-llm-mcp.json"]
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert mcp_rules and all(name in exprs for name in mcp_rules), set(mcp_rules) - set(re.findall(r"[\w:]+", exprs))
    reached = exprs + " ".join(expr for name, expr in mcp_rules.items() if name in exprs)
    for spec in catalogue.MCP_SPECS:
        assert spec.prometheus_name in reached, spec.name
    titles = [p["title"] for p in dashboard["panels"]]
    served, called = [t for t in titles if t.startswith("Served:")], [t for t in titles if t.startswith("Called:")]
    assert len(served) == len(called) == len(titles) / 2 and len(served) % 2 == 0, titles


BEDROCK_MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"  # a cross-region inference profile, as Bedrock names it


def _selected(value: str) -> str:
    """A variable's value as Grafana puts one selection into a Prometheus regex, inside a PromQL string."""
    return re.escape(value).replace("\\", "\\\\")


def test_bedrock_shows_in_the_upstream_and_cost_dashboards_like_any_provider(tmp_path):
    """Offline: with Bedrock's calls only (provider aws.bedrock, a model id with dots and a colon), each variable
    lists it, and every panel drawn per provider and model has a Bedrock series, selected by the variables."""
    values = {**_VALUES, catalogue.GEN_AI_PROVIDER: ("aws.bedrock",), catalogue.GEN_AI_REQUEST_MODEL: (BEDROCK_MODEL,),
              catalogue.TENANT: ("acme",)}
    chosen = {"provider": _selected("aws.bedrock"), "upstream_model": _selected(BEDROCK_MODEL)}
    tests = []
    for name in ("otel-llm-upstream.json", "otel-llm-cost.json"):
        dashboard = dashboards()[name]
        for variable in dashboard["templating"]["list"]:
            if variable["name"] in chosen:
                selector, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]).groups()
                expected = "aws.bedrock" if label == "gen_ai_provider_name" else BEDROCK_MODEL
                tests.append((f"group by ({label}) ({_offline(selector)})", f'{{{label}="{expected}"}}'))
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                if "gen_ai_provider_name" not in target["legendFormat"]:
                    continue
                expr = target["expr"]
                for variable, value in chosen.items():
                    expr = expr.replace(f"${variable}", value)
                tests.append((f"group by (gen_ai_provider_name, gen_ai_request_model) ({_offline(expr)})",
                              f'{{gen_ai_provider_name="aws.bedrock",gen_ai_request_model="{BEDROCK_MODEL}"}}'))
    assert len(tests) > 12
    spec = {"rule_files": [str(ROOT / "prometheus" / "rules" / "recording.yml")], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": _catalogue_series(values, (*catalogue.CALLS_MADE_SPECS,
                                                                                   *catalogue.COST_SPECS)),
                       "promql_expr_test": [{"expr": expr, "eval_time": "14m",
                                             "exp_samples": [{"labels": labels, "value": 1}]}
                                            for expr, labels in tests]}]}
    test_file = tmp_path / "bedrock.test.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(test_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
