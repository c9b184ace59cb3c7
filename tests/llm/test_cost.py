"""USD per LLM call equals genai-prices' own ``calc_price`` on the same usage, served and made, for every
transcript; a model without a price is counted as unpriced and never as a cost of 0; the overrides file
wins over the table, and a broken one stops start-up with a fix that works."""

from __future__ import annotations

import asyncio
import json
import random

import httpx2
import pytest

pytest.importorskip("genai_prices", reason="genai-prices needs Python 3.11 (only the prices file prices on 3.10)")
from genai_prices import Usage, calc_price, data_snapshot  # noqa: E402

from otel_llm_metrics import ConfigError, load_settings  # noqa: E402
from otel_llm_metrics.client import instrumentors  # noqa: E402
from otel_llm_metrics.llm.prices import PROVIDER_IDS, PriceBook, Tokens  # noqa: E402
from tests.asgi_client import call  # noqa: E402
from tests.client.test_wire import _read, _transport  # noqa: E402
from tests.llm.test_transcripts import HERE, TRUTH  # noqa: E402
from tests.llm.test_transcripts_served import _replaying_app  # noqa: E402

SERVED = ("gen_ai.server.cost", "gen_ai.server.cost.unpriced.calls", "gen_ai.server.cost.unpriced.tokens")
MADE = ("gen_ai.client.cost", "gen_ai.client.cost.unpriced.calls", "gen_ai.client.cost.unpriced.tokens")
REQUESTED = "requested-model"


def expected_usd(truth: dict, provider: str, request_model: str) -> float | None:
    """What genai-prices says the call cost (response model first, then the request model); None: no price."""
    if truth["input"] is None:
        return None  # the upstream reported no usage
    usage = Usage(input_tokens=truth["input"], cache_read_tokens=truth["cache_read"] or 0,
                  cache_write_tokens=truth["cache_creation"] or 0, output_tokens=truth["output"] or 0,
                  output_reasoning_tokens=0 if truth["estimated"] else truth["reasoning"] or 0)
    if provider == "ollama":
        return None  # self-hosted: only the overrides file prices it
    for model in (truth["model"], request_model):
        if model:
            try:
                return float(calc_price(usage, model, provider_id=PROVIDER_IDS.get(provider, provider)).total_price)
            except LookupError:
                continue
    return None


def assert_priced_as_genai_prices(view, names: tuple[str, str, str], truth: dict, request_model: str) -> None:
    cost, unpriced_calls, unpriced_tokens = (view.points(name) for name in names)
    if truth["error"]:
        assert not cost and not unpriced_calls, "a failed call is neither a cost nor an unpriced call"
        return
    want = expected_usd(truth, truth["provider"], request_model)
    if want is None:
        assert not cost, "no price is never reported as a cost of 0"
        assert [point.value for point in unpriced_calls] == [1]
        if truth["input"] is not None:
            by_type = {point.attributes["gen_ai.token.type"]: point.value for point in unpriced_tokens}
            assert by_type.get("input") == truth["input"]
        return
    (point,) = cost
    assert abs(point.value - want) <= 1e-9, (point.value, want)
    assert point.value > 0 or want == 0
    assert not unpriced_calls and not unpriced_tokens


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_served_cost_equals_calc_price(make_telemetry, name):
    truth, body = TRUTH[name], (HERE / name).read_bytes()
    telemetry = make_telemetry()
    app = telemetry.instrument(_replaying_app(body, "text/plain"))
    request = json.dumps({"model": REQUESTED, "stream": True, "messages": []}).encode()
    assert asyncio.run(call(app, "POST", truth["path"], body=request)).body == body
    telemetry.registry.gen_ai.prices.wait_loaded()
    assert_priced_as_genai_prices(telemetry.collect(), SERVED, truth, truth["request_model"] or REQUESTED)


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_made_cost_equals_calc_price(make_telemetry, name):
    truth, body = TRUTH[name], (HERE / name).read_bytes()
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    try:
        request = json.dumps({"model": REQUESTED, "stream": True, "messages": []}).encode()
        read, raised = _read(httpx2, _transport(httpx2, [body[:50], body[50:]]), truth["path"], body=request)
        assert raised is None and read == body
        telemetry.registry.gen_ai.prices.wait_loaded()
        view = telemetry.collect()
        assert_priced_as_genai_prices(view, MADE, truth, truth["request_model"] or REQUESTED)
        assert all(point.attributes["server.address"] == "llm.test" for name in MADE for point in view.points(name))
    finally:
        instrumentors.uninstall()


def test_the_transcripts_include_priced_cache_and_reasoning_cases():
    """The exactness above is not vacuous: priced transcripts cover cache reads and reasoning."""
    priced = [truth for truth in TRUTH.values() if not truth["error"]
              and expected_usd(truth, truth["provider"], truth["request_model"] or REQUESTED)]
    assert len(priced) >= 8
    assert any(truth["cache_read"] for truth in priced) and any(truth["reasoning"] for truth in priced)


def test_every_model_of_the_table_is_priced_exactly_at_random_usages():
    """Each plan is built from differences of calc_price: checked against it on every model, tiers included."""
    table = data_snapshot.get_snapshot()
    book = PriceBook()
    book.table = table
    generator = random.Random(18)
    checked = 0
    for provider in table.providers:
        for model in provider.models:
            plan = book._resolve(provider.id, model.id)
            if plan is None:  # an id its own match rules do not accept: calc_price cannot price it either
                with pytest.raises(LookupError):
                    calc_price(Usage(input_tokens=1, output_tokens=1), model.id, provider_id=provider.id)
                continue
            for _ in range(2):
                total = generator.choice([0, 1, 700, 128_001, 200_001, generator.randint(0, 1_200_000)])
                read = generator.randint(0, total)
                write = generator.randint(0, total - read)
                output = generator.randint(0, 60_000)
                reasoning = generator.randint(0, output)
                usage = Usage(input_tokens=total, cache_read_tokens=read, cache_write_tokens=write,
                              output_tokens=output, output_reasoning_tokens=reasoning)
                want = float(calc_price(usage, model.id, provider_id=provider.id).total_price)
                got = plan.cost(Tokens(total, read, write, output, reasoning))
                assert abs(got - want) <= 1e-9 * max(1.0, want), (provider.id, model.id, usage, got, want)
                checked += 1
    assert checked > 2000


def _served_once(telemetry, name: str) -> None:
    truth, body = TRUTH[name], (HERE / name).read_bytes()
    app = telemetry.instrument(_replaying_app(body, "application/json"))
    request = json.dumps({"model": REQUESTED, "messages": []}).encode()
    asyncio.run(call(app, "POST", truth["path"], body=request))
    telemetry.registry.gen_ai.prices.wait_loaded()


def test_the_overrides_file_wins_over_the_table(make_telemetry, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": [
        {"model": "gpt-4o-2024-08-06", "provider": "openai", "input": 1.0, "output": 2.0, "cache_read": 0.5}]}))
    telemetry = make_telemetry(prices_file=str(prices))
    _served_once(telemetry, "openai_chat.json")
    truth = TRUTH["openai_chat.json"]
    read = truth["cache_read"] or 0
    want = ((truth["input"] - read) * 1.0 + read * 0.5 + truth["output"] * 2.0) / 1e6
    (point,) = telemetry.collect().points("gen_ai.server.cost")
    assert abs(point.value - want) <= 1e-12
    assert abs(point.value - expected_usd(truth, "openai", REQUESTED)) > 1e-9, "not the table's price"


def test_a_self_hosted_model_is_unpriced_until_the_file_prices_it(make_telemetry, tmp_path):
    telemetry = make_telemetry()
    _served_once(telemetry, "ollama_chat_stream.ndjson")
    view = telemetry.collect()
    assert not view.points("gen_ai.server.cost")
    (calls,) = view.points("gen_ai.server.cost.unpriced.calls")
    assert calls.value == 1 and calls.attributes["gen_ai.response.model"] == "llama3.2"

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": [{"model": "llama3.2", "input": 0.1, "output": 0.4}]}))
    telemetry = make_telemetry(prices_file=str(prices))
    _served_once(telemetry, "ollama_chat_stream.ndjson")
    truth = TRUTH["ollama_chat_stream.ndjson"]
    (point,) = telemetry.collect().points("gen_ai.server.cost")
    assert abs(point.value - (truth["input"] * 0.1 + truth["output"] * 0.4) / 1e6) <= 1e-12


@pytest.mark.parametrize(("content", "named"), [
    ("{not json", "is not JSON"),
    ('{"models": [{"model": "m", "input": 1}]}', 'models[0] (m): "output" is missing'),
    ('{"models": [{"model": "m", "input": -1, "output": 1}]}', "models[0] (m): input=-1 is not a price"),
    ('{"models": [{"model": "m", "input": 1, "output": 1, "cached": 1}]}', "unknown key 'cached'"),
    ('{"prices": []}', 'expected an object with a "models" list'),
])
def test_a_broken_prices_file_stops_start_up_naming_the_file_the_entry_and_a_fix_that_works(tmp_path, content,
                                                                                             named):
    prices = tmp_path / "prices.json"
    prices.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings({"OTEL_LLM_METRICS_PRICES_FILE": str(prices)})
    message = str(caught.value)
    assert message.startswith(f"OTEL_LLM_METRICS_PRICES_FILE={str(prices)!r} is not valid") or \
        message.startswith("OTEL_LLM_METRICS_PRICES_FILE: "), message
    assert str(prices) in message and named in message, message
    fix = message.split("Fix: make it like ", 1)[1].split(" (USD per million", 1)[0]
    prices.write_text(fix)  # the fix, applied as written
    assert load_settings({"OTEL_LLM_METRICS_PRICES_FILE": str(prices)}).prices_file == str(prices)


def test_cost_off_never_imports_the_table(tmp_path):
    import subprocess
    import sys

    script = ("import sys, asyncio, json\n"
              "from otel_llm_metrics import Telemetry, Registry, load_settings\n"
              "t = Telemetry(load_settings({}, metrics_exporters='none', cost=False), Registry())\n"
              "print('genai_prices' in sys.modules, t.registry.gen_ai.prices)\n"
              "t.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "None"], done.stdout + done.stderr


def test_the_price_book_stays_bounded_whatever_model_names_callers_send(monkeypatch):
    from otel_llm_metrics.llm import prices

    monkeypatch.setattr(prices, "MAX_PLANS", 50)
    book = PriceBook()
    book.wait_loaded()
    assert book.plan_for("openai", ("gpt-4o-2024-08-06", None)) is not None
    for index in range(500):
        assert book.plan_for("openai", (f"invented-{index}", None)) is None
    assert len(book.plans) == 50, "bounded: later names are unpriced without being remembered"
    assert book.plan_for("openai", ("gpt-4o-2024-08-06", None)) is not None, "the early ones keep their price"


def test_a_forked_worker_prices_its_own_calls_never_the_masters(monkeypatch):
    """Issue 26, item 9: calls queued in the master while the table loads stay the master's."""
    import os
    import select
    import signal
    import time

    from otel_llm_metrics import Registry

    registry = Registry()  # its stats are reset by the at-fork hook, as a worker's are
    registry.gen_ai.configure_cost(True, None, 100)
    book = registry.gen_ai.prices
    monkeypatch.setattr(book, "_ensure_loading", lambda: None)  # the master's table is still loading
    priced: list[tuple[str, str, bool]] = []
    for index in range(3):
        models = (f"gpt-4o-master-{index}", "gpt-4o")
        assert book.plan_for("openai", models) is not None  # PENDING
        book.later("openai", models, lambda plan, m=models[0]: priced.append(("master", m, plan is not None)))
    assert len(book.pending) == 3 and not priced
    read_end, write_end = os.pipe()
    # The master's loader holds the book's lock and is setting its event as the worker forks: in the
    # worker those stay held by a thread that is not there.
    held = (book._lock, book._ready._cond)
    for lock in held:
        lock.acquire()
    pid = os.fork()
    if pid:
        for lock in held:
            lock.release()
    else:  # the worker: one JSON line after the fork, one after its own table loaded; never back into pytest
        try:
            del book._ensure_loading  # the worker loads its own table
            lock_free = book._lock.acquire(timeout=5)
            if lock_free:
                book._lock.release()
            os.write(write_end, json.dumps({"pending": len(book.pending), "dropped": book.dropped,
                                            "lock_free": lock_free}).encode() + b"\n")
            book.later("openai", ("gpt-4o-mini", None), lambda plan: priced.append(("worker", "mini",
                                                                                     plan is not None)))
            loaded = book.wait_loaded(20)
            os.write(write_end, json.dumps({"loaded": loaded, "priced": priced}).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(write_end)
    received = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if select.select([read_end], [], [], 0.1)[0]:
                piece = os.read(read_end, 65536)
                if not piece:
                    break
                received += piece
    finally:
        os.close(read_end)
        if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still there at the deadline: stuck
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    reports = [json.loads(line) for line in received.splitlines()]
    assert reports, "the forked worker reported nothing"
    assert reports[0] == {"pending": 0, "dropped": 0, "lock_free": True}, \
        "the worker starts with an empty queue of its own, and a lock it can take"
    assert len(reports) == 2, "the worker got stuck on the event the master's loader held at the fork"
    assert reports[1] == {"loaded": True, "priced": [["worker", "mini", True]]}, \
        "the worker priced its own call, once, and none of the master's"
    assert len(book.pending) == 3 and not priced, "the master's calls wait for the master's own table"
