"""What the code around an outbound call can do to its measurement: tasks and threads started while a call is sent,
a tenant resolver that raises, OpenTelemetry's ``suppress_instrumentation``, an SDK imported after install."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import anyio
import httpx
import httpx2
import openai
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

from otel_llm_metrics.client import instrumentors
from otel_llm_metrics.llm.link import CURRENT, UpstreamTime
from tests.client.sdk_transport import OPENAI_CHAT, Script
from tests.client.test_wire import _transport
from tests.llm.expectations import assert_tokens
from tests.llm.test_transcripts import HERE, TRUTH

DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
URL = "http://llm.test/v1/chat/completions"
BODY = (HERE / "openai_chat.json").read_bytes()


@pytest.fixture
def wire(make_telemetry):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    yield telemetry
    instrumentors.uninstall()


def _models(view) -> dict[str, int]:
    return {p.attributes["gen_ai.request.model"]: p.count for p in view.points(DURATION)}


def test_work_started_while_a_call_is_sent_is_measured_and_a_library_underneath_is_not(wire):
    """A transport that starts a task and a thread during its send (their contexts are copies of the sending
    one): their own later calls are measured. A second client underneath the first (as LiteLLM's httpx client
    sends through aiohttp) sends the same request: it counts once."""
    answer = _transport(httpx2, [BODY], headers=[("content-type", "application/json")])
    started: list = []

    async def later_call(model: str) -> None:
        async with httpx2.AsyncClient(transport=answer) as client:
            await client.post(URL, content=b'{"model": "%s"}' % model.encode())

    class Starting(httpx2.AsyncBaseTransport):
        async def handle_async_request(self, request):
            started.append(asyncio.create_task(later_call("from-task")))
            started.append(asyncio.create_task(asyncio.to_thread(anyio.run, later_call, "from-thread")))
            async with httpx.AsyncClient(transport=_transport(httpx, [BODY], headers=[
                    ("content-type", "application/json")])) as underneath:  # the library underneath
                inner = await underneath.post(str(request.url), content=request.content)
            return httpx2.Response(inner.status_code, headers=inner.headers.raw, content=inner.content)

    async def main():
        async with httpx2.AsyncClient(transport=Starting()) as client:
            await client.post(URL, content=b'{"model": "outer"}')
        await asyncio.gather(*started)
    asyncio.run(main())
    view = wire.collect()
    assert _models(view) == {"outer": 1, "from-task": 1, "from-thread": 1}
    assert sum(p.value for p in view.points(ATTEMPTS)) == 3, "the request underneath is not counted again"


def test_a_raising_tenant_resolver_leaves_the_tenant_unknown_and_the_call_measured(wire):
    def resolver() -> str:
        raise LookupError("no tenant in this request's state")
    link = UpstreamTime()
    link.resolve = resolver
    token = CURRENT.set(link)
    try:
        with httpx2.Client(transport=_transport(httpx2, [BODY], headers=[("content-type", "application/json")])) as c:
            assert c.post(URL, content=b'{"model": "m"}').content == BODY
        assert link.current_tenant() is None, "the served side reads it as unknown too"
    finally:
        CURRENT.reset(token)
    view = wire.collect()
    (duration,) = view.points(DURATION)
    assert duration.count == 1 and "tenant.id" not in duration.attributes
    assert link.calls == 1 and link.in_flight == 0
    assert_tokens(view.points(TOKENS), TRUTH["openai_chat.json"])


@pytest.mark.parametrize("suppress", [suppress_instrumentation, suppress_http_instrumentation])
def test_a_call_under_suppress_instrumentation_is_left_alone(wire, suppress):
    transport = _transport(httpx2, [BODY], headers=[("content-type", "application/json")])
    with httpx2.Client(transport=transport) as client:
        with suppress():
            assert client.post(URL, content=b'{"model": "suppressed"}').content == BODY
        client.post(URL, content=b'{"model": "measured"}').read()
    assert _models(wire.collect()) == {"measured": 1}


def test_an_sdk_imported_after_install_has_its_calls_followed_and_uninstall_restores_it():
    script = textwrap.dedent("""
        import sys
        from otel_llm_metrics.client import operation
        operation.patch()
        assert "openai" not in sys.modules
        import openai, wrapt
        from openai._base_client import AsyncAPIClient, SyncAPIClient
        assert isinstance(SyncAPIClient.__dict__["request"], wrapt.FunctionWrapper)
        assert isinstance(AsyncAPIClient.__dict__["request"], wrapt.FunctionWrapper)
        operation.unpatch()
        assert not isinstance(SyncAPIClient.__dict__["request"], wrapt.FunctionWrapper)
        operation.patch()
        assert isinstance(SyncAPIClient.__dict__["request"], wrapt.FunctionWrapper)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_an_sdk_call_opens_its_operation_only_while_installed(wire):
    from otel_llm_metrics.client import operation

    seen = []
    client = openai.OpenAI(base_url="http://llm.test/v1", api_key="k", max_retries=0,
                           http_client=httpx2.Client(transport=Script(OPENAI_CHAT)))
    original = Script.handle_request

    def spying(self, request):
        seen.append(operation.CURRENT.get())
        return original(self, request)
    Script.handle_request = spying
    try:
        client.chat.completions.create(model="m", messages=[])
        instrumentors.uninstall()
        client.chat.completions.create(model="m", messages=[])
    finally:
        Script.handle_request = original
    assert isinstance(seen[0], operation.Operation) and seen[1] is None
    assert operation.CURRENT.get() is None, "reset after the call"
