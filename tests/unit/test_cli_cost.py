"""The CLI's view of what the LLM traffic cost: a hand-written exposition, read twice 10 s apart.

Calls made (gen_ai_client_cost_USD_total), between the two readings:
- openai gpt-4o-mini (answered as gpt-4o-mini-2024-07-18), two tenants: $0.00015 -> $0.00055, so $0.0004 in 10 s
  ($0.144 an hour); 1 call of it had no usage, so no price (unpriced, not in the USD);
- anthropic claude-sonnet-4-20250514: $10 -> $12.50, so $2.50 ($900 an hour);
- openai acme-llama-ft (no response model said): no price at all, 2 -> 5 unpriced calls.
Responses served (gen_ai_server_cost_USD_total): gpt-4o-mini-2024-07-18 $0.0005 -> $0.0009; demo-model has no
price, 4 -> 6 unpriced calls. The expected numbers are worked out by hand.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from otel_llm_metrics import catalogue as c
from otel_llm_metrics.cli import Reading, snapshot, summary
from otel_llm_metrics.cli import cost as cost_module
from otel_llm_metrics.cli import doctor as doctor_module
from otel_llm_metrics.cli.cost import costs, price_coverage, usd
from otel_llm_metrics.cli.interval import between
from otel_llm_metrics.cli.readings import parse
from otel_llm_metrics.cli.watch import cost_row, screen

SCOPE = 'otel_scope_name="otel_llm_metrics",otel_scope_version=""'
MINI = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini",' \
       'gen_ai_response_model="gpt-4o-mini-2024-07-18"'
SONNET = 'gen_ai_operation_name="chat",gen_ai_provider_name="anthropic",gen_ai_request_model="claude-sonnet-4",' \
         'gen_ai_response_model="claude-sonnet-4-20250514"'
LLAMA = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="acme-llama-ft"'
DEMO = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="demo-model",' \
       'gen_ai_response_model="demo-model"'
OPENAI_HOST, ANTHROPIC_HOST = 'server_address="api.openai.com"', 'server_address="api.anthropic.com"'
CLIENT_COST, SERVER_COST = "gen_ai_client_cost_USD_total", "gen_ai_server_cost_USD_total"
CLIENT_UNPRICED, SERVER_UNPRICED = "gen_ai_client_cost_unpriced_calls_total", "gen_ai_server_cost_unpriced_calls_total"
CLIENT_UNPRICED_TOKENS = "gen_ai_client_cost_unpriced_tokens_total"
CLIENT_TOKENS, SERVER_TOKENS = "gen_ai_client_token_usage", "gen_ai_server_token_usage"


def _counter(name: str, series: dict[str, float]) -> str:
    return "\n".join([f"# TYPE {name} counter"] + [f"{name}{{{labels},{SCOPE}}} {value!r}"
                                                    for labels, value in series.items()])


def _tokens(name: str, labels: list[str]) -> str:
    """One input-token series per label set (the bucket values do not matter here: which models were seen does)."""
    lines = [f"# TYPE {name} histogram"]
    for one in labels:
        of = f'{one},gen_ai_token_type="input",{SCOPE}'
        lines += [f'{name}_bucket{{{of},le="256.0"}} 1', f'{name}_bucket{{{of},le="+Inf"}} 1',
                  f"{name}_count{{{of}}} 1", f"{name}_sum{{{of}}} 100"]
    return "\n".join(lines)


def _exposition(client_cost: tuple[float, float, float], unpriced: tuple[float, float],
                unpriced_tokens: tuple[float, float], served: float, served_unpriced: float) -> str:
    acme, globex, sonnet = client_cost
    mini_unpriced, llama_unpriced = unpriced
    return "\n".join([
        _counter(CLIENT_COST, {f'{MINI},{OPENAI_HOST},tenant_id="acme"': acme,
                               f'{MINI},{OPENAI_HOST},tenant_id="globex"': globex,
                               f'{SONNET},{ANTHROPIC_HOST},tenant_id="acme"': sonnet}),
        _counter(CLIENT_UNPRICED, {**({f'{MINI},{OPENAI_HOST},tenant_id="acme"': mini_unpriced}
                                      if mini_unpriced else {}),
                                   f'{LLAMA},server_address="llm.acme.internal"': llama_unpriced}),
        _counter(CLIENT_UNPRICED_TOKENS, {f'{LLAMA},server_address="llm.acme.internal",gen_ai_token_type="input"':
                                          unpriced_tokens[0],
                                          f'{LLAMA},server_address="llm.acme.internal",gen_ai_token_type="output"':
                                          unpriced_tokens[1]}),
        _counter(SERVER_COST, {MINI: served}),
        _counter(SERVER_UNPRICED, {DEMO: served_unpriced}),
        _tokens(CLIENT_TOKENS, [f"{MINI},{OPENAI_HOST}", f"{SONNET},{ANTHROPIC_HOST}", LLAMA]),
        _tokens(SERVER_TOKENS, [MINI, DEMO, 'gen_ai_operation_name="chat",gen_ai_request_model="mistral-local"']),
    ]) + "\n"


EARLIER = _exposition((0.0001, 0.00005, 10.0), (0.0, 2.0), (300.0, 100.0), 0.0005, 4.0)
LATER = _exposition((0.0004, 0.00015, 12.5), (1.0, 5.0), (750.0, 250.0), 0.0009, 6.0)
NO_COST = "\n".join([_tokens(CLIENT_TOKENS, [f"{MINI},{OPENAI_HOST}"]),
                     _counter("gen_ai_client_attempts_total", {f"{MINI},{OPENAI_HOST}": 3.0})]) + "\n"


def _interval():
    return between(Reading.of([EARLIER], at=100.0), Reading.of([LATER], at=110.0))


def _by_model(side) -> dict:
    return {m.model: m for m in side.models}


def test_money_is_readable_small_and_large_and_unknown_is_not_zero():
    assert usd(0.000123) == "$0.000123" and usd(0.0123) == "$0.0123" and usd(0.144) == "$0.144"
    assert usd(12.3456) == "$12.35" and usd(1234.5) == "$1,234.50" and usd(1.0) == "$1.00"
    assert usd(0.0) == "$0" and usd(None) == "-" and usd(4e-7) == "<$0.000001"


def test_an_interval_gives_usd_per_provider_and_model_with_tenants_added_and_unpriced_calls_apart():
    interval = _interval()
    assert set(interval.cost) == {"made", "served"}
    made = _by_model(interval.cost["made"])
    assert list(made) == ["claude-sonnet-4-20250514", "acme-llama-ft", "gpt-4o-mini-2024-07-18"], \
        "sorted by provider, then model: the response model where said, else the requested one"
    mini, sonnet, llama = made["gpt-4o-mini-2024-07-18"], made["claude-sonnet-4-20250514"], made["acme-llama-ft"]
    assert mini.usd == pytest.approx(0.0004) and mini.unpriced_calls == 1.0
    assert sonnet.usd == pytest.approx(2.5) and sonnet.unpriced_calls == 0.0
    assert llama.usd is None, "no price is not $0"
    assert llama.unpriced_calls == 3.0 and llama.unpriced_tokens == {"input": 450.0, "output": 150.0}
    assert interval.cost["made"].usd == pytest.approx(2.5004) and interval.cost["made"].unpriced_calls == 4.0
    served = _by_model(interval.cost["served"])
    assert served["gpt-4o-mini-2024-07-18"].usd == pytest.approx(0.0004) and served["demo-model"].usd is None
    assert served["demo-model"].unpriced_calls == 2.0


def test_the_watch_screen_shows_usd_and_usd_per_hour_per_model_and_no_price_where_there_is_none():
    from rich.console import Console

    console = Console(record=True, width=160)  # what watch uses when piped
    console.print(screen(_interval(), ["http://x/metrics"], ""))
    text = console.export_text()
    lines = text.splitlines()
    made = lines.index(next(line for line in lines if "Cost of the LLM calls this app made" in line))
    served = lines.index(next(line for line in lines if "Cost of the LLM responses this app served" in line))
    assert made < served
    assert any(line.strip() == "4 calls unpriced: not in the USD" for line in lines[made:served]), text
    assert any(line.strip() == "2 calls unpriced: not in the USD" for line in lines[served:]), text

    def row(model: str, after: int) -> list[str]:
        return next(line for line in lines[after:] if f" {model} " in line).split()

    assert row("gpt-4o-mini-2024-07-18", made) == ["openai", "gpt-4o-mini-2024-07-18", "$0.000400", "$0.144", "1"]
    assert row("claude-sonnet-4-20250514", made) == ["anthropic", "claude-sonnet-4-20250514", "$2.50", "$900.00",
                                                     "0"]
    assert row("acme-llama-ft", made) == ["openai", "acme-llama-ft", "no", "price", "no", "price", "3"]
    assert next(line for line in lines[made:served] if line.split()[:1] == ["all"]).split() == \
        ["all", "$2.50", "$900.14", "4"]
    assert row("demo-model", served) == ["openai", "demo-model", "no", "price", "no", "price", "2"]
    assert row("gpt-4o-mini-2024-07-18", served)[2:] == ["$0.000400", "$0.144", "0"]


def test_the_first_watch_screen_gives_usd_since_start_and_no_rate():
    first = between(None, Reading.of([LATER], at=110.0))
    mini = _by_model(first.cost["made"])["gpt-4o-mini-2024-07-18"]
    assert cost_row(first, mini) == ("openai", "gpt-4o-mini-2024-07-18", "$0.000550", "-", "1")
    llama = _by_model(first.cost["made"])["acme-llama-ft"]
    assert cost_row(first, llama) == ("openai", "acme-llama-ft", "no price", "no price", "5")


def test_an_idle_interval_costs_zero_for_a_priced_model_but_still_no_price_for_an_unpriced_one():
    idle = between(Reading.of([LATER], at=100.0), Reading.of([LATER], at=110.0))
    made = _by_model(idle.cost["made"])
    assert cost_row(idle, made["claude-sonnet-4-20250514"])[2:] == ("$0", "$0", "0")
    assert cost_row(idle, made["acme-llama-ft"])[2:] == ("no price", "no price", "0")


def test_without_cost_series_no_cost_view_appears():
    from rich.console import Console

    interval = between(Reading.of([NO_COST], at=100.0), Reading.of([NO_COST], at=110.0))
    assert interval.cost == {}
    console = Console(record=True, width=160)
    console.print(screen(interval, ["http://x/metrics"], ""))
    assert "Cost" not in console.export_text()
    assert "Cost" not in summary(NO_COST)
    assert snapshot(NO_COST, now=1.0)["cost"] == {"calls_made": None, "responses_served": None}
    # a side alone: only the calls made
    made_only = _counter(CLIENT_COST, {f"{SONNET},{ANTHROPIC_HOST}": 1.0}) + "\n"
    assert set(costs(parse(made_only)[0])) == {"made"}


def test_summary_gives_usd_since_start_and_no_price_with_the_calls_it_left_out():
    lines = summary(LATER).splitlines()
    made = lines.index("Cost of the LLM calls this app made (its spend), USD since start:")
    served = lines.index("Cost of the LLM responses this app served (never add to the calls made), USD since start:")
    assert [line.split() for line in lines[made + 1:served]] == [
        ["anthropic", "claude-sonnet-4-20250514", "$12.50"],
        ["openai", "acme-llama-ft", "no", "price", "(5", "calls)"],
        ["openai", "gpt-4o-mini-2024-07-18", "$0.000550", "(+", "1", "call", "unpriced,", "not", "in", "it)"],
        ["all", "$12.50", "(+", "6", "calls", "unpriced,", "not", "in", "it)"]]
    assert [line.split() for line in lines[served + 1:served + 4]] == [
        ["openai", "demo-model", "no", "price", "(6", "calls)"],
        ["openai", "gpt-4o-mini-2024-07-18", "$0.000900"],
        ["all", "$0.000900", "(+", "6", "calls", "unpriced,", "not", "in", "it)"]]


def test_snapshot_json_gives_a_cost_section_with_usd_per_hour_since_the_state():
    shot = snapshot(LATER, previous=snapshot(EARLIER, now=100.0), now=110.0)
    assert shot["schema"] == "otel-llm-metrics.snapshot/1", "a key added, the schema name kept"
    made, served = shot["cost"]["calls_made"], shot["cost"]["responses_served"]
    assert made["usd"] == pytest.approx(12.50055) and made["unpriced_calls"] == 6.0
    assert made["rates"] == pytest.approx({"usd_per_hour": 900.144, "unpriced_calls_per_s": 0.4})
    models = {m["model"]: m for m in made["models"]}
    mini, llama = models["gpt-4o-mini-2024-07-18"], models["acme-llama-ft"]
    assert (mini["provider"], mini["usd"], mini["unpriced_calls"]) == ("openai", pytest.approx(0.00055), 1.0)
    assert mini["rates"] == pytest.approx({"usd_per_hour": 0.144, "unpriced_calls_per_s": 0.1})
    assert llama["usd"] is None and llama["rates"]["usd_per_hour"] is None, "no price: null, never 0"
    assert llama["unpriced_tokens"] == {"input": 750.0, "output": 250.0}
    assert llama["rates"]["unpriced_calls_per_s"] == pytest.approx(0.3)
    assert served["usd"] == pytest.approx(0.0009) and served["rates"]["usd_per_hour"] == pytest.approx(0.144)
    assert {m["model"]: m["usd"] for m in served["models"]} == {"demo-model": None,
                                                                "gpt-4o-mini-2024-07-18": pytest.approx(0.0009)}
    assert snapshot(LATER, now=110.0)["cost"]["calls_made"]["rates"] is None, "no state: no rates"


def test_a_state_from_before_the_cost_section_gives_no_cost_rates_rather_than_wrong_ones():
    old = snapshot(EARLIER, now=100.0)
    del old["cost"]
    shot = snapshot(LATER, previous=old, now=110.0)
    assert shot["cost"]["calls_made"]["rates"] is None
    assert all(m["rates"] is None for m in shot["cost"]["calls_made"]["models"])
    assert shot["cost"]["calls_made"]["usd"] == pytest.approx(12.50055)


def test_price_coverage_counts_the_models_seen_with_a_cost_series_as_priced():
    seen, unpriced = price_coverage(*parse(LATER))
    assert seen == [("", "mistral-local"), ("anthropic", "claude-sonnet-4-20250514"), ("openai", "acme-llama-ft"),
                    ("openai", "demo-model"), ("openai", "gpt-4o-mini-2024-07-18")]
    assert unpriced == [("", "mistral-local"), ("openai", "acme-llama-ft"), ("openai", "demo-model")]
    # tokens that did not say their response model are of the requested one, which a cost series names too
    asked = _tokens(CLIENT_TOKENS, ['gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini"'])
    priced = _counter(CLIENT_COST, {MINI: 0.1})
    assert price_coverage(*parse(asked + "\n" + priced + "\n")) == ([("openai", "gpt-4o-mini"),
                                                                     ("openai", "gpt-4o-mini-2024-07-18")], [])


@pytest.fixture
def genai_prices(monkeypatch):
    """genai-prices 0.2.3 installed, cost on, no overrides file: whatever this machine has."""
    real = doctor_module.metadata.version
    monkeypatch.setattr(doctor_module.metadata, "version",
                        lambda name: "0.2.3" if name == "genai-prices" else real(name))
    monkeypatch.delenv("OTEL_LLM_METRICS_COST", raising=False)
    monkeypatch.delenv("OTEL_LLM_METRICS_PRICES_FILE", raising=False)


def test_doctor_names_the_price_table_and_the_models_with_no_price_with_the_fix(genai_prices, monkeypatch):
    check = doctor_module.check_prices([LATER])
    line = check.line()
    assert line.startswith("WARN price table: genai-prices 0.2.3; 2 of 5 models seen have a price; no price: "
                           "mistral-local, acme-llama-ft (openai), demo-model (openai)\n"), line
    assert "Fix: add their prices to an overrides file named by OTEL_LLM_METRICS_PRICES_FILE (docs/cost.md), in " \
           'USD per million tokens, e.g. {"models": [{"model": "mistral-local", "input": USD, "output": USD}]}, ' \
           "and restart the app" in line, line
    monkeypatch.setenv("OTEL_LLM_METRICS_PRICES_FILE", "/etc/prices.json")
    assert "to the overrides file /etc/prices.json" in doctor_module.check_prices([LATER]).line()
    assert "genai-prices 0.2.3, overrides /etc/prices.json;" in doctor_module.check_prices([LATER]).line()


@pytest.mark.usefixtures("genai_prices")  # as installed on 3.11+: the 3.10 session has no genai-prices
def test_doctor_lists_at_most_ten_models_with_no_price():
    many = _tokens(CLIENT_TOKENS, [f'gen_ai_provider_name="vllm",gen_ai_request_model="m{i:02}"' for i in range(12)])
    text = many + "\n" + _counter(CLIENT_UNPRICED, {'gen_ai_provider_name="vllm",gen_ai_request_model="m00"': 1.0})
    check = doctor_module.check_prices([text + "\n"])
    assert "0 of 12 models seen have a price; no price: m00 (vllm), m01 (vllm)" in check.detail, check.detail
    assert "m09 (vllm) and 2 more" in check.detail and "m10" not in check.detail, check.detail
    assert '{"models": [{"model": "m00", "provider": "vllm", "input": USD, "output": USD}]}' in check.fix, check.fix


@pytest.mark.usefixtures("genai_prices")
def test_doctor_says_info_when_every_model_has_a_price_and_warns_when_the_app_reports_no_cost():
    priced = "\n".join([_tokens(CLIENT_TOKENS, [f"{MINI},{OPENAI_HOST}"]),
                        _counter(CLIENT_COST, {f"{MINI},{OPENAI_HOST}": 0.5})]) + "\n"
    assert doctor_module.check_prices([priced]).line() == \
        "INFO price table: genai-prices 0.2.3; 1 of 1 models seen have a price"
    assert doctor_module.check_prices([NO_COST]).line().startswith(
        "WARN price table: genai-prices 0.2.3; 1 model(s) seen, but the app reports no cost\n     Fix: cost is off")
    assert doctor_module.check_prices(["# nothing\n"]).line() == \
        "INFO price table: genai-prices 0.2.3; no LLM model seen yet"
    assert doctor_module.check_prices(None).line() == \
        "INFO price table: genai-prices 0.2.3; models not checked (no metrics endpoint answered)"


def test_doctor_says_when_genai_prices_is_not_installed_or_cost_is_off(monkeypatch):
    def missing(name: str) -> str:
        raise doctor_module.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(doctor_module.metadata, "version", missing)
    monkeypatch.delenv("OTEL_LLM_METRICS_COST", raising=False)
    line = doctor_module.check_prices([LATER]).line()
    assert line.startswith("WARN price table: genai-prices not installed: only OTEL_LLM_METRICS_PRICES_FILE "
                           "prices calls\n     Fix: pip install genai-prices"), line
    monkeypatch.setenv("OTEL_LLM_METRICS_COST", "false")
    assert doctor_module.check_prices([LATER]).line() == \
        "INFO price table: cost off (OTEL_LLM_METRICS_COST=false); genai-prices not installed"


def test_a_model_with_no_price_is_advice_and_does_not_fail_the_doctor(genai_prices, monkeypatch, capsys):
    for name in [n for n in __import__("os").environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = LATER.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = doctor_module.doctor([f"http://127.0.0.1:{server.server_address[1]}/metrics"], None, None)
    finally:
        server.shutdown()
        server.server_close()
    output = capsys.readouterr().out
    lines = output.splitlines()
    assert lines[1].startswith("OK   metrics endpoint"), output
    price = next(i for i, line in enumerate(lines) if line.startswith("WARN price table"))  # Bedrock advice after
    assert lines[price].startswith("WARN price table: genai-prices 0.2.3; 2 of 5 models seen have a price"), output
    assert lines[price + 1].startswith("     Fix: add their prices"), output
    assert code == 0 and "FAIL" not in output, output


def test_the_names_read_here_are_the_catalogue_s():
    specs = {spec.name: spec.prometheus_name for spec in getattr(c, "COST_SPECS", ())}
    if not specs:
        pytest.skip("the catalogue has no cost instruments yet")
    assert specs == {"gen_ai.client.cost": cost_module.COST["made"], "gen_ai.server.cost": cost_module.COST["served"],
                     "gen_ai.client.cost.unpriced.calls": cost_module.UNPRICED_CALLS["made"],
                     "gen_ai.server.cost.unpriced.calls": cost_module.UNPRICED_CALLS["served"],
                     "gen_ai.client.cost.unpriced.tokens": cost_module.UNPRICED_TOKENS["made"],
                     "gen_ai.server.cost.unpriced.tokens": cost_module.UNPRICED_TOKENS["served"]}
