"""USD per LLM call: genai-prices' table (shipped with that package, never fetched) or the user's overrides.

A call's price is linear in its token counts within one prompt-length tier, so each (provider, model)
is resolved once into a ``Plan``: per-token coefficients taken as exact differences of genai-prices'
own ``ModelPrice.calc_price`` (its unit tree, cache fallbacks and cliff tiers included), then kept as
floats. A call then costs a handful of multiplications instead of ~58 us of ``calc_price``.

The table takes 0.2-1.6 s to import, so it loads in a daemon thread at the first priced call of each
process; calls recorded meanwhile wait in a bounded queue and are priced when it is ready.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from time import monotonic
from typing import Any, NamedTuple

logger = logging.getLogger("otel_llm_metrics")

# gen_ai.provider.name (the conventions' values) -> genai-prices provider id; other names are tried as ids.
PROVIDER_IDS = {
    "openai": "openai", "anthropic": "anthropic", "gcp.gemini": "google", "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google", "aws.bedrock": "aws", "azure.ai.openai": "azure", "azure.ai.inference": "azure",
    "mistral_ai": "mistral", "groq": "groq", "deepseek": "deepseek", "x_ai": "x-ai", "cohere": "cohere",
    "perplexity": "perplexity",
}
SELF_HOSTED = frozenset({"ollama"})  # no table price can be right for them: only the overrides file prices them
PRICE_FIELDS = ("input", "cache_read", "cache_write", "output", "reasoning")  # USD per million tokens
MAX_PENDING = 10_000
MAX_PLANS = 10_000  # (provider, model names) pairs kept: model names come from callers, so the book is bounded


class Tokens(NamedTuple):
    """One call's usage as genai-prices reads it: input and output are totals (cache and reasoning inside)."""

    input: int
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0

    def consistent(self) -> bool:
        return self.cache_read + self.cache_write <= self.input and self.reasoning <= self.output


class Plan:
    """A model's price as per-token coefficients, one set per prompt-length tier."""

    __slots__ = ("thresholds", "regions")

    def __init__(self, thresholds: tuple[int, ...], regions: tuple[tuple[float, ...], ...]) -> None:
        self.thresholds = thresholds  # tier starts: a prompt of more input tokens than one pays its tier
        self.regions = regions  # (per call, input, cache read, cache write, output, reasoning) per tier

    def cost(self, tokens: Tokens) -> float:
        total, cache_read, cache_write, output, reasoning = tokens
        region = 0
        for start in self.thresholds:
            if total <= start:
                break
            region += 1
        fixed, a, b, c, d, e = self.regions[region]
        return fixed + a * total + b * cache_read + c * cache_write + d * output + e * reasoning


def plan_from_override(prices: dict[str, float]) -> Plan:
    """USD per million tokens by type -> coefficients over totals (cached and reasoning tokens are inside them)."""
    inp, out = prices["input"], prices["output"]
    read, write, reasoning = prices.get("cache_read", inp), prices.get("cache_write", inp), prices.get("reasoning", out)
    per = 1_000_000
    return Plan((), ((0.0, inp / per, (read - inp) / per, (write - inp) / per, out / per, (reasoning - out) / per),))


def plan_from_model_price(model_price: Any) -> Plan | None:  # noqa: ANN401 - a genai_prices.types.ModelPrice
    """Coefficients that reproduce ``model_price.calc_price`` exactly; None when it is not linear in our tokens."""
    from genai_prices.types import TieredPrices, Usage

    def price(i: int, r: int = 0, w: int = 0, o: int = 0, z: int = 0) -> Decimal:
        usage = Usage(input_tokens=i, cache_read_tokens=r, cache_write_tokens=w, output_tokens=o,
                      output_reasoning_tokens=z)
        return model_price.calc_price(usage)["total_price"]

    starts = sorted({tier.start for value in vars(model_price).values() if isinstance(value, TieredPrices)
                     for tier in value.tiers})
    regions = []
    for index, low in enumerate([None, *starts]):
        base = 0 if low is None else low + 1
        high = starts[index] if index < len(starts) else None
        if high is not None and base + 2 > high:
            return None  # a tier too narrow to probe: such a table is priced call by call
        at_base, at_next = price(base), price(base + 1)
        per_input = at_next - at_base
        per_read = price(base + 1, r=1) - at_next
        per_write = price(base + 1, w=1) - at_next
        per_output = price(base, o=1) - at_base
        per_reasoning = price(base, o=1, z=1) - price(base, o=1)
        fixed = at_base - per_input * base
        regions.append(tuple(float(v) for v in (fixed, per_input, per_read, per_write, per_output, per_reasoning)))
    return Plan(tuple(starts), tuple(regions))


class _Exact:
    """A model whose price is not linear in our tokens: genai-prices computes each call (rare, slow)."""

    def __init__(self, model_price: Any) -> None:  # noqa: ANN401
        self.model_price = model_price

    def cost(self, tokens: Tokens) -> float:
        from genai_prices.types import Usage

        usage = Usage(input_tokens=tokens.input, cache_read_tokens=tokens.cache_read,
                      cache_write_tokens=tokens.cache_write, output_tokens=tokens.output,
                      output_reasoning_tokens=tokens.reasoning)
        return float(self.model_price.calc_price(usage)["total_price"])


class _ByTime:
    """A model whose table price changes with the date or the time of day (off-peak hours): one plan per
    price, the one in force looked up again once a minute (a price change is seen within that minute)."""

    RECHECK_S = 60.0

    def __init__(self, model: Any) -> None:  # noqa: ANN401 - a genai_prices.types.ModelInfo
        self.model = model
        self.plans: dict[int, Plan | _Exact] = {}
        self.current: Plan | _Exact | None = None
        self.until = 0.0  # monotonic

    def cost(self, tokens: Tokens) -> float:
        if monotonic() >= self.until or self.current is None:
            model_price = self.model.get_prices(datetime.now(tz=timezone.utc))
            plan = self.plans.get(id(model_price))
            if plan is None:
                plan = self.plans[id(model_price)] = plan_from_model_price(model_price) or _Exact(model_price)
            self.current, self.until = plan, monotonic() + self.RECHECK_S
        return self.current.cost(tokens)


Priced = Plan | _Exact | _ByTime
UNPRICED = None
PENDING = object()  # the table is still loading


# -- the overrides file ---------------------------------------------------------------------------
class PricesFileError(ValueError):
    """The overrides file cannot be used; the message names the file, the entry and a fix."""


EXAMPLE_ENTRY = '{"model": "llama3.2", "provider": "ollama", "input": 0.1, "output": 0.4}'


def read_overrides(path: str) -> dict[tuple[str | None, str], Plan]:
    """{(provider or None, model): plan} from a JSON file ``{"models": [entry, ...]}``; raises PricesFileError."""
    def fail(where: str, problem: str) -> PricesFileError:
        return PricesFileError(f"{path}: {where}: {problem}. Fix: make it like "
                               f'{{"models": [{EXAMPLE_ENTRY}]}} (USD per million tokens; cache_read, '
                               "cache_write and reasoning are optional)")
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except OSError as exc:
        raise fail("cannot be read", str(exc)) from None
    except ValueError as exc:
        raise fail("is not JSON", str(exc)) from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise fail("the top level", 'expected an object with a "models" list')
    plans: dict[tuple[str | None, str], Plan] = {}
    for index, entry in enumerate(document["models"]):
        where = f"models[{index}]"
        if not isinstance(entry, dict):
            raise fail(where, "expected an object")
        model = entry.get("model")
        if not isinstance(model, str) or not model.strip():
            raise fail(where, '"model" is missing or not a non-empty string')
        where = f"models[{index}] ({model})"
        provider = entry.get("provider")
        if provider is not None and (not isinstance(provider, str) or not provider.strip()):
            raise fail(where, '"provider" must be a gen_ai.provider.name such as openai, or left out')
        unknown = sorted(set(entry) - {"model", "provider", *PRICE_FIELDS})
        if unknown:
            raise fail(where, f"unknown key {unknown[0]!r}; the prices are {', '.join(PRICE_FIELDS)}")
        prices: dict[str, float] = {}
        for name in PRICE_FIELDS:
            if name not in entry:
                continue
            value = entry[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
                raise fail(where, f"{name}={value!r} is not a price: expected a number >= 0 (USD per million tokens)")
            prices[name] = float(value)
        missing = [name for name in ("input", "output") if name not in prices]
        if missing:
            raise fail(where, f'"{missing[0]}" is missing: input and output prices are required')
        key = (provider.strip() if provider else None, model.strip())
        if key in plans:
            raise fail(where, "the same model and provider appear twice; keep one entry")
        plans[key] = plan_from_override(prices)
    return plans


# -- the price book of one process ----------------------------------------------------------------
class PriceBook:
    """Plans by (provider, model): the overrides first, then genai-prices' table once it has loaded."""

    def __init__(self, overrides: dict[tuple[str | None, str], Plan] | None = None) -> None:
        self.overrides = overrides or {}
        self.plans: dict[tuple, Priced | None] = {}  # (provider, (response model, request model)) -> plan
        self.pending: deque[tuple[Callable[[Priced | None], None], str | None, tuple]] = deque()
        self.dropped = 0  # calls that arrived while the table loaded and the queue was full
        self.table: Any = None  # genai-prices' data snapshot, once loaded
        self.failed = False  # genai-prices is missing or broken: only the overrides price
        self._lock = threading.Lock()
        self._loader_pid: int | None = None
        self._ready = threading.Event()  # set once the table loaded (or failed) and the queue was priced

    def plan_for(self, provider: str | None, models: tuple[str | None, str | None]) -> Priced | None | object:
        """The plan of the first of ``models`` (response, request) with a price; None: neither has one;
        ``PENDING`` while the table loads (then hand the call to ``later``)."""
        plan = self.plans.get((provider, models), PENDING)
        if plan is not PENDING:
            return plan
        if len(self.plans) >= MAX_PLANS:  # past the bound a new name is counted unpriced, never remembered
            return UNPRICED
        names = [model for model in dict.fromkeys(models) if model]
        for model in names:
            override = self.overrides.get((provider, model)) or self.overrides.get((None, model))
            if override is not None:
                self.plans[(provider, models)] = override
                return override
        if not names or provider in SELF_HOSTED or self.failed:
            self.plans[(provider, models)] = UNPRICED
            return UNPRICED
        if self.table is None:
            with self._lock:
                if self.table is None and not self.failed:
                    self._ensure_loading()
                    return PENDING
        plan = self.plans[(provider, models)] = self._resolve_first(provider, models)
        return plan

    def later(self, provider: str | None, models: tuple[str | None, str | None],
              then: Callable[[Priced | None], None]) -> None:
        """Price a call that arrived while the table loads once it has (bounded: the excess is dropped)."""
        with self._lock:
            if self.table is None and not self.failed:
                if len(self.pending) < MAX_PENDING:
                    self.pending.append((then, provider, models))
                else:
                    self.dropped += 1
                return
        plan = self.plan_for(provider, models)
        then(None if plan is PENDING else plan)  # type: ignore[arg-type]

    def _resolve_first(self, provider: str | None, models: tuple[str | None, str | None]) -> Priced | None:
        if self.table is None:  # failed: only overrides price (checked before queueing)
            return UNPRICED
        for model in dict.fromkeys(models):
            if model:
                plan = self._resolve(provider, model)
                if plan is not None:
                    return plan
        return UNPRICED

    def _resolve(self, provider: str | None, model: str) -> Priced | None:
        provider_id = PROVIDER_IDS.get(provider or "", provider)
        if not provider_id or self.table is None:
            return UNPRICED
        try:
            _, info = self.table.find_provider_model(model, None, provider_id, None)
        except LookupError:
            return UNPRICED
        except Exception:
            logger.debug("otel_llm_metrics: genai-prices could not look up %s/%s", provider, model, exc_info=True)
            return UNPRICED
        if isinstance(info.prices, list):  # prices that start on a date or hold at some hours only
            return _ByTime(info)
        # Service-tier variants (flex, priority) need a request context we do not read: standard prices.
        model_price = info.get_prices(datetime.now(tz=timezone.utc))
        return plan_from_model_price(model_price) or _Exact(model_price)

    def _ensure_loading(self) -> None:
        """Start the loader in this process (a fork's child starts its own); under ``self._lock``."""
        if self._loader_pid == os.getpid():
            return
        self._loader_pid = os.getpid()
        threading.Thread(target=self._load, name="otel-llm-metrics-prices", daemon=True).start()

    def _load(self) -> None:
        try:
            from genai_prices import data_snapshot

            table = data_snapshot.get_snapshot()
        except Exception as exc:  # missing or broken: cost stays off for the table's models, said once
            logger.warning("otel_llm_metrics: the genai-prices table could not be loaded (%s; its current "
                           "releases need Python 3.11); only models in OTEL_LLM_METRICS_PRICES_FILE are priced, "
                           "the others are counted as unpriced", exc)
            table = None
        with self._lock:
            self.table = table
            self.failed = table is None
            waiting, self.pending = list(self.pending), deque()
        for then, provider, models in waiting:
            try:
                plan = self.plans.get((provider, models), False)
                if plan is False:
                    plan = self._resolve_first(provider, models)
                    if len(self.plans) < MAX_PLANS:
                        self.plans[(provider, models)] = plan
                then(plan)  # type: ignore[arg-type]
            except Exception:
                logger.debug("otel_llm_metrics: a queued cost could not be recorded", exc_info=True)
        self._ready.set()

    def after_fork(self) -> None:
        """In a forked child (an at-fork hook): start over with the parent's calls left to the parent.

        The queue holds the parent's calls, which its own loader prices: kept, each worker would add
        them to its numbers again. The lock and the event may have been held by the parent's loader
        thread, which did not survive, and that thread is restarted here when the table was still
        loading. Only fresh objects are made: nothing that waits (or logs, or starts a thread) runs here.
        """
        self.pending = deque()
        self.dropped = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        if self.table is None and not self.failed:
            self._loader_pid = None
        else:
            self._ready.set()

    def wait_loaded(self, timeout: float = 60.0) -> bool:
        """For tests: block until the table has loaded (or failed) and the calls queued meanwhile are priced."""
        if self.table is None and not self.failed:
            with self._lock:
                self._ensure_loading()
        self._ready.wait(timeout)
        return self.table is not None


def table_version() -> str | None:
    """The installed genai-prices version (its data ships with it), without importing the table."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genai-prices")
    except PackageNotFoundError:
        return None
