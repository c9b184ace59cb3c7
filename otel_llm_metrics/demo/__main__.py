"""``make demo``: run the demo app with zero-code instrumentation, send traffic, show the numbers.

Starts ``opentelemetry-instrument uvicorn otel_llm_metrics.demo.app:app`` (embedded Prometheus
endpoint, no collector), sends plain requests, streams and one stream the client abandons, prints
a summary read back from the metrics endpoint, then keeps serving until Ctrl-C or DEMO_SECONDS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from otel_llm_metrics import catalogue
from otel_llm_metrics.cli import read_metrics, summary

APP_PORT = int(os.environ.get("DEMO_PORT", "8000"))
METRICS_PORT = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
BASE = f"http://127.0.0.1:{APP_PORT}"
METRICS = f"http://127.0.0.1:{METRICS_PORT}/metrics"
CHAT = {"model": "demo-model", "messages": [{"role": "user", "content": "tell me about metrics"}],
        "max_tokens": 24}


def start_app() -> subprocess.Popen:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "OTEL_SERVICE_NAME": os.environ.get("OTEL_SERVICE_NAME", "otel-llm-metrics-demo"),
           "OTEL_EXPORTER_PROMETHEUS_PORT": str(METRICS_PORT)}
    command = [str(bindir / "opentelemetry-instrument"), str(bindir / "uvicorn"), "otel_llm_metrics.demo.app:app",
               "--host", "127.0.0.1", "--port", str(APP_PORT), "--no-access-log"]
    print("$", " ".join(command[:1] + [Path(command[1]).name] + command[2:]), flush=True)
    # Its own session: Ctrl-C in the terminal reaches only this runner, which then stops the app with
    # one signal. Two (the terminal's and ours) made uvicorn force-exit with a traceback.
    return subprocess.Popen(command, env=env, start_new_session=True)


def wait_until(check, what: str, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"demo: {what} did not happen within {deadline_s:.0f}s")


async def traffic() -> int:
    """Plain requests, streams (several at once, to show in-flight, peak and the limiter queue)."""
    async with httpx.AsyncClient(base_url=BASE, timeout=30) as client:
        plain = [client.post("/v1/chat/completions", json=CHAT) for _ in range(12)]
        streams = [_stream(client) for _ in range(8)]
        await asyncio.gather(*plain, *streams, _cancelled_stream(client))
        await client.get("/v1/models")
        await client.post("/v1/chat/completions", json={"messages": []})  # a 400
    return 12 + 8 + 1 + 2


async def _stream(client: httpx.AsyncClient) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for _ in response.aiter_lines():
            pass


async def _cancelled_stream(client: httpx.AsyncClient) -> None:
    """Read three lines, then walk away like an impatient user."""
    async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True,
                                                                   "max_tokens": 400}) as response:
        lines = 0
        async for line in response.aiter_lines():
            lines += line.startswith("data:")
            if lines >= 3:
                break


def counted_requests() -> float:
    text = read_metrics(METRICS)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(catalogue.REQUEST_DURATION.prometheus_name + "_count"))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # stop as on Ctrl-C: one signal to the app, then wait for it


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    app = start_app()
    try:
        wait_until(lambda: httpx.get(f"{BASE}/health").status_code == 200, "the app answering /health")
        sent = asyncio.run(traffic())
        wait_until(lambda: counted_requests() >= sent, f"{sent} requests showing on {METRICS}")
        print(f"\nSent {sent} requests (plain, streamed, one abandoned stream). From {METRICS}:\n", flush=True)
        print(summary(read_metrics(METRICS)), flush=True)
        seconds = float(os.environ.get("DEMO_SECONDS", "0"))
        print(f"\nServing: app {BASE}/v1/chat/completions, metrics {METRICS}\n"
              f"Live view: .venv/bin/otel-llm-metrics watch {METRICS}\n"
              + (f"Stopping in {seconds:.0f}s." if seconds else "Ctrl-C to stop."), flush=True)
        stop_at = time.monotonic() + seconds if seconds else float("inf")
        while time.monotonic() < stop_at:
            # Short sleeps, not signal.pause(): a Ctrl-C arriving just before pause() began would be missed
            # and the demo would wait forever (seen under load: killed right after "Ctrl-C to stop").
            time.sleep(min(0.2, max(0.0, stop_at - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the app's shutdown short
        app.send_signal(signal.SIGINT)
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
