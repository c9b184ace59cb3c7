"""What cost adds per LLM request: the served path end to end (a chat completion through the middleware) with cost
on and off, interleaved in one run, and the price itself (a resolved plan vs genai-prices' calc_price per call).

    python benchmarks/bench_cost.py [--requests 20000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

ANSWER = (Path(__file__).resolve().parents[1] / "tests" / "llm" / "transcripts" / "openai_chat.json").read_bytes()
REQUEST = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'


def _app(cost: bool, tenant: bool = False):
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_llm_metrics import Registry, Telemetry, load_settings

    async def chat(request):
        await request.body()
        return Response(ANSWER, media_type="application/json")
    settings = load_settings(environ={}, metrics_exporters=("none",), cost=cost,
                             tenant_header="x-tenant-id" if tenant else None)
    telemetry = Telemetry(settings, Registry(), [InMemoryMetricReader()])
    if cost:
        telemetry.registry.gen_ai.prices.wait_loaded()
    return telemetry.instrument(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]))


async def _drive(app, n: int) -> float:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "root_path": "",
             "query_string": b"", "headers": [(b"content-type", b"application/json"), (b"x-tenant-id", b"acme")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}

    async def receive():
        return {"type": "http.request", "body": REQUEST, "more_body": False}

    async def send(message):
        pass
    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / n


async def _measure(apps: dict, per_batch: int, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():
        await _drive(app, 200)  # warm: first-call paths (plan resolution) out of the timing
    for _ in range(repeats):
        for name, app in apps.items():
            gc.collect()
            samples[name].append(await _drive(app, per_batch))
    return {name: statistics.median(values) for name, values in samples.items()}


def _price_alone(n: int) -> tuple[float, float]:
    from genai_prices import Usage, calc_price

    from otel_llm_metrics.llm.prices import PriceBook, Tokens

    book = PriceBook()
    book.wait_loaded()
    plan = book._resolve("openai", "gpt-4o-2024-08-06")
    tokens = Tokens(1200, 300, 0, 250, 0)
    started = time.perf_counter()
    for _ in range(n):
        plan.cost(tokens)
    ours = (time.perf_counter() - started) / n
    usage = Usage(input_tokens=1200, cache_read_tokens=300, output_tokens=250)
    started = time.perf_counter()
    for _ in range(n // 50):
        calc_price(usage, "gpt-4o-2024-08-06", provider_id="openai")
    theirs = (time.perf_counter() - started) / (n // 50)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    from otel_llm_metrics.llm.prices import PriceBook

    PriceBook().wait_loaded()
    print(f"genai-prices table loaded in {time.perf_counter() - started:.2f} s (once per process, in a thread)\n")
    apps = {"cost off": _app(False), "cost on": _app(True), "cost on + tenant header": _app(True, tenant=True)}
    results = asyncio.run(_measure(apps, args.requests // args.repeats, args.repeats))
    print(f"A chat completion served through the middleware, medians of {args.repeats} interleaved repeats\n")
    print("| variant | per request (us) | added vs cost off (us) |")
    print("|---|---:|---:|")
    for name, value in results.items():
        print(f"| {name} | {value * 1e6:.1f} | {(value - results['cost off']) * 1e6:+.2f} |")
    ours, theirs = _price_alone(200_000)
    print(f"\nThe price alone: a resolved plan {ours * 1e6:.3f} us per call; genai-prices' calc_price "
          f"{theirs * 1e6:.1f} us per call")


if __name__ == "__main__":
    main()
