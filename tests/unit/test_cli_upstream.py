"""The CLI's view of the LLM calls an app makes: a hand-written exposition, read twice 10 s apart.

Between the two readings, openai/gpt-4o-mini made 21 calls (1 failed) in 25 attempts (5 answered 429), 3200
input and 3000 output tokens; anthropic (measured from spans: no attempts, no input tokens) made 4 calls. The
expected numbers below are worked out by hand from the buckets, as PromQL's histogram_quantile would.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from otel_llm_metrics.cli import Reading, parse, snapshot
from otel_llm_metrics.cli.interval import between
from otel_llm_metrics.cli.record import COLUMNS, row
from otel_llm_metrics.cli.report import report
from otel_llm_metrics.cli.upstream import upstream_calls
from otel_llm_metrics.cli.watch import screen, upstream_row

SCOPE = 'otel_scope_name="otel_llm_metrics",otel_scope_version=""'
OPENAI = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini",' \
         'server_address="api.openai.com",server_port="443"'
OPENAI_OK = f'error_type="",{OPENAI},gen_ai_response_model="gpt-4o-mini-2024-07-18"'
OPENAI_429 = f'error_type="429",{OPENAI},gen_ai_response_model=""'
CLAUDE = 'error_type="",gen_ai_operation_name="chat",gen_ai_provider_name="anthropic",' \
         'gen_ai_request_model="claude-3-5-haiku",gen_ai_response_model="claude-3-5-haiku",' \
         'server_address="api.anthropic.com",server_port="443"'
CHAT = 'http_request_method="POST",http_route="/v1/chat"'
HEALTH = 'http_request_method="GET",http_route="/health"'

def _histogram(name: str, labels: str, bounds: tuple[float, ...], cumulative: tuple[float, ...], total: float) -> str:
    """One series as the exporter writes it: every bucket of the family, cumulative, then +Inf, count and sum."""
    lines = [f'{name}_bucket{{{labels},{SCOPE},le="{bound}"}} {count}'
             for bound, count in zip(bounds, cumulative, strict=True)]
    lines += [f'{name}_bucket{{{labels},{SCOPE},le="+Inf"}} {cumulative[-1]}',
              f"{name}_count{{{labels},{SCOPE}}} {cumulative[-1]}", f"{name}_sum{{{labels},{SCOPE}}} {total}"]
    return "\n".join(lines)


REQUESTS, CALLS = "http_server_request_duration_seconds", "gen_ai_client_operation_duration_seconds"
FIRST_CHUNK, TOKENS = "gen_ai_client_operation_time_to_first_chunk_seconds", "gen_ai_client_token_usage"
OVERHEAD = "http_server_request_upstream_overhead_seconds"
FIRST_TOKEN = "http_server_request_first_token_overhead_seconds"
SECONDS = (0.005, 0.01, 0.025, 0.5, 1.0)  # a few of catalogue.DURATION_BUCKETS
GEN_AI = (0.02, 0.04, 0.16, 0.32, 0.64, 1.28, 2.56)  # of GEN_AI_DURATION_BUCKETS: each twice the one before
FIRST = (0.1, 0.25, 0.5)
TOKEN = (64.0, 256.0)
INPUT, CACHED, OUTPUT = ('gen_ai_token_type="input",gen_ai_token_cache="none"',
                         'gen_ai_token_type="input",gen_ai_token_cache="read"',
                         'gen_ai_token_type="output",gen_ai_token_cache=""')
STATUS_200 = 'http_response_status_code="200"'


def _gauges(name: str, values: dict[tuple[str, str], float]) -> str:
    """Rate-limit gauges of openai/gpt-4o-mini, one per (resource, worker pid)."""
    return "\n".join([f"# TYPE {name} gauge"] + [
        f'{name}{{gen_ai_provider_name="openai",gen_ai_rate_limit_resource="{resource}",'
        f'gen_ai_request_model="gpt-4o-mini",process_pid="{pid}",server_address="api.openai.com",'
        f'server_port="443",{SCOPE}}} {value}' for (resource, pid), value in values.items()])


EARLIER = "\n".join([
    f"# HELP {REQUESTS} Duration of HTTP server requests.", f"# TYPE {REQUESTS} histogram",
    _histogram(REQUESTS, f"{CHAT},{STATUS_200}", SECONDS, (0, 0, 0, 3, 10), 6.0),
    _histogram(REQUESTS, f"{HEALTH},{STATUS_200}", SECONDS, (5, 5, 5, 5, 5), 0.01),
    f"# HELP {CALLS} LLM calls this app made upstream.", f"# TYPE {CALLS} histogram",
    _histogram(CALLS, OPENAI_OK, GEN_AI, (0, 0, 0, 2, 10, 10, 10), 4.0),
    _histogram(CALLS, OPENAI_429, GEN_AI, (0, 1, 1, 1, 1, 1, 1), 0.03),
    _histogram(CALLS, CLAUDE, GEN_AI, (0, 0, 0, 0, 0, 2, 2), 2.0),
    f"# TYPE {FIRST_CHUNK} histogram",
    _histogram(FIRST_CHUNK, OPENAI_OK, FIRST, (0, 0, 10), 3.5),
    f"# TYPE {TOKENS} histogram",
    _histogram(TOKENS, f"{OPENAI_OK},{INPUT}", TOKEN, (0, 10), 1000.0),
    _histogram(TOKENS, f"{OPENAI_OK},{CACHED}", TOKEN, (0, 4), 400.0),
    _histogram(TOKENS, f"{OPENAI_OK},{OUTPUT}", TOKEN, (0, 10), 2000.0),
    _histogram(TOKENS, f"{CLAUDE},{OUTPUT}", TOKEN, (0, 2), 300.0),
    "# TYPE gen_ai_client_attempts_total counter",
    f'gen_ai_client_attempts_total{{error_type="",{OPENAI},{SCOPE}}} 10.0',
    f'gen_ai_client_attempts_total{{error_type="429",{OPENAI},{SCOPE}}} 3.0',
    f"# TYPE {OVERHEAD} histogram",
    _histogram(OVERHEAD, CHAT, SECONDS[:3], (5, 10, 10), 0.06),
]) + "\n"

# 10 s later: the same series grown, a first-token overhead new, and the rate-limit gauges of two workers.
LATER = "\n".join([
    f"# TYPE {REQUESTS} histogram",
    _histogram(REQUESTS, f"{CHAT},{STATUS_200}", SECONDS, (0, 0, 0, 9, 31), 19.0),
    _histogram(REQUESTS, f"{HEALTH},{STATUS_200}", SECONDS, (15, 15, 15, 15, 15), 0.03),
    f"# TYPE {CALLS} histogram",
    _histogram(CALLS, OPENAI_OK, GEN_AI, (0, 0, 0, 7, 30, 30, 30), 12.0),
    _histogram(CALLS, OPENAI_429, GEN_AI, (0, 2, 2, 2, 2, 2, 2), 0.06),
    _histogram(CALLS, CLAUDE, GEN_AI, (0, 0, 0, 0, 0, 5, 6), 7.0),
    f"# TYPE {FIRST_CHUNK} histogram",
    _histogram(FIRST_CHUNK, OPENAI_OK, FIRST, (0, 2, 30), 10.0),
    f"# TYPE {TOKENS} histogram",
    _histogram(TOKENS, f"{OPENAI_OK},{INPUT}", TOKEN, (0, 30), 3000.0),
    _histogram(TOKENS, f"{OPENAI_OK},{CACHED}", TOKEN, (0, 12), 1600.0),
    _histogram(TOKENS, f"{OPENAI_OK},{OUTPUT}", TOKEN, (0, 30), 5000.0),
    _histogram(TOKENS, f"{CLAUDE},{OUTPUT}", TOKEN, (0, 6), 900.0),
    "# TYPE gen_ai_client_attempts_total counter",
    f'gen_ai_client_attempts_total{{error_type="",{OPENAI},{SCOPE}}} 30.0',
    f'gen_ai_client_attempts_total{{error_type="429",{OPENAI},{SCOPE}}} 8.0',
    _gauges("gen_ai_client_rate_limit_remaining",
            {("requests", "101"): 4990.0, ("requests", "102"): 4980.0, ("tokens", "101"): 1940000.0}),
    _gauges("gen_ai_client_rate_limit_limit", {("requests", "101"): 5000.0, ("tokens", "101"): 2000000.0}),
    f"# TYPE {OVERHEAD} histogram",
    _histogram(OVERHEAD, CHAT, SECONDS[:3], (5, 20, 30), 0.3),
    f"# TYPE {FIRST_TOKEN} histogram",
    _histogram(FIRST_TOKEN, CHAT, (0.001, 0.005), (3, 4), 0.006),
]) + "\n"


def _interval():
    return between(Reading.of([EARLIER], at=100.0), Reading.of([LATER], at=110.0))


def _by_provider(calls) -> dict:
    return {u.provider: u for u in calls}


def test_an_interval_gives_calls_attempts_errors_and_tokens_per_second_per_provider_and_model():
    interval = _interval()
    openai, claude = (_by_provider(interval.upstream)[p] for p in ("openai", "anthropic"))
    assert (openai.model, claude.model) == ("gpt-4o-mini", "claude-3-5-haiku")
    assert interval.per_s(openai.calls) == pytest.approx(2.1)  # 20 answered + 1 that failed, in 10 s
    assert interval.per_s(openai.failed) == pytest.approx(0.1)
    assert interval.per_s(openai.attempts) == pytest.approx(2.5) and openai.retries == 4
    assert openai.errors == {"429": 5.0}
    assert interval.per_s(openai.input_tokens) == pytest.approx(320.0), "cache-read input tokens are input too"
    assert interval.per_s(openai.output_tokens) == pytest.approx(300.0)
    assert openai.rate_limits == {"requests": (4980.0, 5000.0), "tokens": (1940000.0, 2000000.0)}
    assert interval.per_s(claude.calls) == pytest.approx(0.4)
    assert claude.attempts is None and claude.retries is None and claude.input_tokens is None, "unknown, not 0"
    assert interval.per_s(claude.output_tokens) == pytest.approx(60.0)


def test_interval_percentiles_come_from_the_bucket_deltas_not_the_totals():
    openai = _by_provider(_interval().upstream)["openai"]
    # deltas: le 0.04: 1, 0.32: 6, 0.64: 21 of 21; p50 rank 10.5 -> 0.32 + 0.32 * 4.5 / 15
    assert openai.duration.quantile(0.5) == pytest.approx(0.416)
    assert openai.duration.quantile(0.95) == pytest.approx(0.32 + 0.32 * 13.95 / 15)
    # first chunk deltas: le 0.25: 2, 0.5: 20 of 20; p50 rank 10 -> 0.25 + 0.25 * 8 / 18
    assert openai.first_chunk.quantile(0.5) == pytest.approx(0.25 + 0.25 * 8 / 18)
    assert openai.first_chunk.describe(0.95) == "486 ms"


def test_the_overhead_per_route_is_the_interval_s_and_absent_for_routes_without_upstream_calls():
    routes = {r.route: r for r in _interval().routes}
    overhead = routes["/v1/chat"].overhead
    assert overhead is not None and overhead.count == 20
    assert overhead.describe(0.5) == "10 ms"  # rank 10 at the top of (5, 10] ms
    assert overhead.describe(0.95) == "10-25 ms" and overhead.quantile(0.95) == pytest.approx(0.0235)
    assert routes["/v1/chat"].first_token_overhead.count == 4, "no earlier series: all of it is new"
    assert routes["/health"].overhead is None and routes["/health"].first_token_overhead is None


def test_the_watch_screen_shows_the_calls_made_next_to_the_requests_served():
    from rich.console import Console

    console = Console(record=True, width=160)  # what watch uses when piped
    console.print(screen(_interval(), ["http://x/metrics"], ""))
    text = console.export_text()
    openai = next(line for line in text.splitlines() if line.startswith(" openai")).split()
    assert openai[:6] == ["openai", "gpt-4o-mini", "2.1", "2.5", "0.1", "429"], openai
    assert openai[6:] == ["0.5", "416", "ms", "618", "ms", "361", "ms", "486", "ms", "320.0", "300.0"], openai
    claude = next(line for line in text.splitlines() if "claude-3-5-haiku" in line).split()
    assert claude[2:6] == ["0.4", "-", "0.0", "-"], "no attempts reported: '-', not 0"
    assert claude[-4:] == ["-", "-", "-", "60.0"], "no first chunk, no input tokens"
    assert "Rate limits left openai gpt-4o-mini: requests 4980/5000, tokens 1.9M/2.0M" in text
    assert "Rate limits left anthropic" not in text
    overhead = next(line for line in text.splitlines() if "/v1/chat" in line and "10-25 ms" in line).split()
    assert overhead[:7] == ["POST", "/v1/chat", "10", "ms", "10-25", "ms", "12"], overhead  # mean 0.24 s / 20
    assert sum("/health" in line for line in text.splitlines()) == 1, "no overhead row for a route without calls"


def test_the_first_watch_screen_has_percentiles_since_start_but_no_rates():
    first = between(None, Reading.of([LATER], at=110.0))
    row = {r.route: r for r in first.routes}
    openai = _by_provider(first.upstream)["openai"]
    assert first.per_s(openai.calls) is None and openai.calls == 32 and openai.attempts == 38
    assert upstream_row(first, openai)[2:6] == ("-", "-", "-", "-"), "totals since start are not rates"
    assert openai.duration.quantile(0.5) == pytest.approx(0.32 + 0.32 * 7 / 23)  # rank 16; le 0.32: 9 of 32
    assert row["/v1/chat"].overhead.count == 30


def test_snapshot_json_gives_the_upstream_calls_and_their_rates_since_the_state():
    earlier = snapshot(EARLIER, now=100.0)
    shot = snapshot(LATER, previous=earlier, now=110.0)
    assert shot["schema"] == "otel-llm-metrics.snapshot/1", "fields added, the schema name kept"
    calls = {u["provider"]: u for u in shot["upstream_calls"]}
    openai, claude = calls["openai"], calls["anthropic"]
    assert (openai["calls"], openai["failed_calls"], openai["attempts"], openai["retries"]) == (32, 2, 38, 6)
    assert openai["errors"] == {"429": 8.0} and openai["input_tokens"] == 4600 and openai["output_tokens"] == 5000
    assert openai["rate_limits"] == {"requests": {"remaining": 4980.0, "limit": 5000.0},
                                     "tokens": {"remaining": 1940000.0, "limit": 2000000.0}}
    assert openai["duration_s"]["p50"]["value"] == pytest.approx(0.32 + 0.32 * 7 / 23)
    assert openai["time_to_first_chunk_s"]["p95"]["bucket"] == [0.25, 0.5]
    rates = dict(openai["rates"])
    assert rates.pop("errors_per_s") == pytest.approx({"429": 0.5})
    assert rates == pytest.approx({"calls_per_s": 2.1, "failed_calls_per_s": 0.1, "attempts_per_s": 2.5,
                                   "input_tokens_per_s": 320.0, "output_tokens_per_s": 300.0})
    assert claude["attempts"] is None and claude["input_tokens"] is None and claude["errors"] == {}
    assert claude["rates"]["attempts_per_s"] is None and claude["rates"]["calls_per_s"] == pytest.approx(0.4)
    assert shot["totals"]["upstream_calls"] == 38 and shot["totals"]["upstream_errors"] == 8
    assert shot["rates"]["upstream_calls_per_s"] == pytest.approx(2.5)
    assert shot["rates"]["requests_per_s"] == pytest.approx(3.1)
    routes = {r["route"]: r for r in shot["routes"]}
    assert routes["/v1/chat"]["upstream_overhead_s"]["count"] == 30
    assert routes["/v1/chat"]["upstream_overhead_s"]["p50"]["bucket"] == [0.005, 0.01]
    assert routes["/health"]["upstream_overhead_s"] is None and routes["/health"]["first_token_overhead_s"] is None


def test_a_state_from_an_older_version_gives_no_upstream_rates_rather_than_wrong_ones():
    old = snapshot(EARLIER, now=100.0)
    del old["upstream_calls"]
    for name in [n for n in old["totals"] if n.startswith("upstream_")]:
        del old["totals"][name]
    shot = snapshot(LATER, previous=old, now=110.0)
    assert shot["rates"]["upstream_calls_per_s"] is None and shot["rates"]["requests_per_s"] == pytest.approx(3.1)
    assert all(u["rates"] is None for u in shot["upstream_calls"])


def test_merged_endpoints_add_up_calls_but_not_what_is_left_of_a_shared_rate_limit():
    samples, histograms = parse([LATER, LATER])
    (openai,) = [u for u in upstream_calls(histograms, samples) if u.provider == "openai"]
    assert openai.calls == 64 and openai.attempts == 76
    assert openai.rate_limits["requests"] == (4980.0, 5000.0)
    other_region = LATER.replace('"api.openai.com"', '"eu.api.openai.com"').replace(" 4980.0", " 4000.0")
    samples, histograms = parse([LATER, other_region])
    (openai,) = [u for u in upstream_calls(histograms, samples) if u.provider == "openai"]
    assert openai.errors == {"429": 16.0} and openai.calls == 64, "one provider and model over two servers"
    assert openai.rate_limits["requests"] == (4000.0, 5000.0)


def test_an_idle_interval_shows_zero_rates_and_no_percentiles():
    idle = between(Reading.of([LATER], at=100.0), Reading.of([LATER], at=110.0))
    openai = _by_provider(idle.upstream)["openai"]
    # no call, so no tokens reported either: "-", as for the models served
    assert upstream_row(idle, openai) == ("openai", "gpt-4o-mini", "0.0", "0.0", "0.0", "0.0", "-", "-", "-", "-",
                                          "-", "-")
    assert {r.route: r for r in idle.routes}["/v1/chat"].overhead.count == 0


def test_record_writes_the_upstream_columns_and_leaves_them_blank_without_upstream_calls():
    values = row(_interval())
    assert set(values) == set(COLUMNS)
    assert values["upstream_calls_per_s"] == "2.500" and values["upstream_attempts_per_s"] == "2.500"
    assert values["upstream_errors_per_s"] == "0.500" and values["upstream_input_tokens_per_s"] == "320.000"
    assert values["upstream_output_tokens_per_s"] == "360.000"
    assert values["overhead_p50_ms"] == "10.00" and values["overhead_p95_ms"] == "23.50"
    assert float(values["upstream_p50_ms"]) > 0 and values["upstream_first_chunk_p50_ms"] == "361.11"
    bare = row(between(Reading(0.0, {}, {}), Reading(10.0, {}, {})))
    upstream = [name for name in COLUMNS[COLUMNS.index("upstream_calls_per_s"):]]
    assert len(upstream) == 12 and all(bare[name] == "" for name in upstream), bare


def _write(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_report_draws_the_upstream_plot_when_the_recording_has_its_columns(tmp_path):
    first = row(_interval())
    second = {**first, "time": f"{float(first['time']) + 10:.3f}", "upstream_calls_per_s": "1.500",
              "upstream_attempts_per_s": "", "overhead_p95_ms": "40.00"}
    _write(tmp_path / "new.csv", [first, second], COLUMNS)
    assert report(str(tmp_path / "new.csv"), str(tmp_path / "new")) == 0
    assert (tmp_path / "new" / "upstream.png").stat().st_size > 0
    markdown = (tmp_path / "new" / "report.md").read_text()
    assert "| upstream calls (attempts, failed attempts) | 40 (25, 10) |" in markdown, markdown
    assert "| app overhead p95, median / worst | 31.8 / 40.0 ms |" in markdown, markdown
    assert "![Upstream LLM calls and app overhead](upstream.png)" in markdown

    old_columns = COLUMNS[:COLUMNS.index("upstream_calls_per_s")]
    _write(tmp_path / "old.csv", [first, second], old_columns)
    assert report(str(tmp_path / "old.csv"), str(tmp_path / "old")) == 0
    assert not (tmp_path / "old" / "upstream.png").exists() and (tmp_path / "old" / "latency.png").exists()
    old = (tmp_path / "old" / "report.md").read_text()
    assert "upstream.png" not in old and "| upstream calls" not in old
    assert not math.isnan(float(first["upstream_p95_ms"]))
