"""Other libraries' GenAI numbers are dropped only where we measure the same calls (issue 26).

The app calls Bedrock through boto3 with opentelemetry-instrumentation-botocore installed (what
``opentelemetry-bootstrap -a install`` adds beside boto3) and OpenAI through the openai SDK with
opentelemetry-instrumentation-openai-v2, under ``opentelemetry-instrument`` with our configurator, exporting
OTLP to a real receiver. Bedrock's calls go over urllib3, which we never measure: botocore's numbers must arrive.
The OpenAI call goes over httpx, which we measure at the wire: only our copy may arrive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import opentelemetry.instrumentation.botocore  # noqa: E402,F401 - in the test extra: missing is a failure
import pytest

from tests import local_http
from tests.integration.servers import BIN, ROOT, free_port, wait_for
from tests.otlp_receiver import Receiver, attributes_of

pytestmark = pytest.mark.integration

BOTOCORE = "opentelemetry.instrumentation.botocore.bedrock-runtime"
OURS = "otel_llm_metrics"
CONVERSE = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 7, "outputTokens": 4, "totalTokens": 11}, "metrics": {"latencyMs": 5}}
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """Bedrock's Converse and OpenAI's chat completions, stood in on a loopback port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            answer = CONVERSE if self.path.endswith("/converse") else CHAT if self.path.endswith(
                "/chat/completions") else None
            body = json.dumps(answer).encode()
            self.send_response(200 if answer is not None else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def _points(receiver: Receiver) -> list[tuple[int, str, str, dict, object]]:
    """(export number, scope, metric name, attributes, point) of every metrics export so far."""
    found = []
    for i, request in enumerate(receiver.metrics_requests()):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points if kind else ():
                        found.append((i, sm.scope.name, metric.name, attributes_of(point.attributes), point))
    return found


def _serve(upstream: str, receiver: Receiver, disabled: str = "") -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AWS_"))},
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
           "UPSTREAM_URL": upstream, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled}
    log_path = Path(tempfile.mkstemp(prefix="other-genai-", suffix=".log")[1])
    command = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "tests.integration.other_genai_app:app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)

    def ready() -> bool:
        if popen.poll() is not None:
            pytest.fail(f"the app exited with {popen.returncode}:\n{log_path.read_text(errors='replace')}")
        return local_http.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200

    wait_for(ready, "the app answering", 60)
    return popen, port, log_path


@pytest.mark.parametrize("ours_for_bedrock", [False, True], ids=["ours-left-out", "ours-at-work"])
def test_bedrock_counted_once_and_openai_v2_copies_dropped(upstream, receiver, ours_for_bedrock):
    """Our botocore instrumentor left out: botocore's numbers are the only ones, and arrive. At work (the default):
    ours count Bedrock's call, botocore's copies are dropped; either way once."""
    popen, port, log_path = _serve(upstream, receiver, "" if ours_for_bedrock else "otel_llm_metrics_botocore")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.post("/bedrock").json() == {"answer": "hi"}
            assert client.post("/openai").json() == {"answer": "hi"}

        def both_exported() -> int | None:
            points = _points(receiver)
            bedrock = OURS if ours_for_bedrock else BOTOCORE
            theirs = [p for p in points if p[1] == bedrock and p[2] == "gen_ai.client.token.usage"
                      and p[3].get("gen_ai.provider.name", p[3].get("gen_ai.system")) == "aws.bedrock"]
            ours = [p for p in points if p[1] == OURS and p[2] == "gen_ai.client.operation.duration"]
            return max(p[0] for p in theirs + ours) if theirs and ours else None

        seen = wait_for(both_exported, "botocore's and our gen_ai.client.* at the receiver", 30)
        wait_for(lambda: len(receiver.metrics_requests()) > seen + 1, "one more export after both", 30)
        points = _points(receiver)
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)
    log = log_path.read_text(errors="replace")
    log_path.unlink(missing_ok=True)
    last = max(p[0] for p in points)
    latest = [p for p in points if p[0] == last]  # cumulative: the last export holds every total

    def bedrock(attributes: dict) -> bool:
        return (attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system")) == "aws.bedrock"

    counting = OURS if ours_for_bedrock else BOTOCORE
    tokens = {a.get("gen_ai.token.type"): p.sum for _, s, n, a, p in latest
              if s == counting and n == "gen_ai.client.token.usage" and bedrock(a)}
    assert tokens == {"input": 7, "output": 4}, (tokens, log)
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        sources = {s for _, s, n, a, _ in points if n == name and bedrock(a)}
        assert sources == {counting}, f"Bedrock's {name} from {sources}: counted once, by {counting}"
    durations = [p for _, s, n, a, p in latest if s == counting and n == "gen_ai.client.operation.duration"
                 and bedrock(a)]
    assert [p.count for p in durations] == [1] and durations[0].sum > 0

    ours = [(a, p) for _, s, n, a, p in latest if s == OURS and n == "gen_ai.client.operation.duration"
            and not bedrock(a)]
    assert [(a.get("gen_ai.provider.name"), p.count) for a, p in ours] == [("openai", 1)], ours
    copies = {(s, n) for _, s, n, a, _ in points if s != OURS and n.startswith("gen_ai.client.")
              and (a.get("gen_ai.provider.name") or a.get("gen_ai.system")) == "openai"}
    assert not copies, f"openai-v2's copies of a call measured at the wire: {copies}"
    assert "Traceback" not in log, log
