"""One SDK call is one operation, whatever its attempts, wherever it runs: the openai and anthropic SDKs' own
retry loops bound it. A failed call is recorded when the SDK gives up (in a background task or a thread, with
no served request around it), a retried one once with all its attempts, and a call still retrying when the
process exits by its last push, exactly once."""

from __future__ import annotations

import asyncio
import threading

import anthropic
import httpx2
import openai
import pytest

from otel_llm_metrics.client import instrumentors
from otel_llm_metrics.client.call import flush_pending
from tests.client.sdk_transport import ANTHROPIC_MESSAGE, OPENAI_CHAT, RATE_LIMITED, Script
from tests.llm.expectations import assert_tokens
from tests.llm.test_transcripts import TRUTH

DURATION, TOKENS, ATTEMPTS = "gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.attempts"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def wire(make_telemetry):
    telemetry = make_telemetry()
    telemetry.measure_upstream_calls()
    yield telemetry
    instrumentors.uninstall()


def _openai(script: Script, retries: int, use_async: bool = False, **options):
    if use_async:
        return openai.AsyncOpenAI(base_url="http://llm.test/v1", api_key="k", max_retries=retries,
                                  http_client=httpx2.AsyncClient(transport=script), **options)
    return openai.OpenAI(base_url="http://llm.test/v1", api_key="k", max_retries=retries,
                         http_client=httpx2.Client(transport=script), **options)


def _anthropic(script: Script, retries: int, use_async: bool = False):
    if use_async:
        return anthropic.AsyncAnthropic(base_url="http://llm.test", api_key="k", max_retries=retries,
                                        http_client=httpx2.AsyncClient(transport=script))
    return anthropic.Anthropic(base_url="http://llm.test", api_key="k", max_retries=retries,
                               http_client=httpx2.Client(transport=script))


def _in_background_task(call) -> BaseException | None:
    """Run ``call()`` (a coroutine) in a task of its own, as a worker does; what it raised."""
    async def main():
        task = asyncio.create_task(call())
        try:
            await task
        except Exception as error:  # noqa: BLE001 - the SDK's error is the point
            return error
        return None
    return asyncio.run(main())


def _in_thread(call) -> BaseException | None:
    raised: list[BaseException] = []

    def run():
        try:
            call()
        except Exception as error:  # noqa: BLE001
            raised.append(error)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return raised[0] if raised else None


def _one_failed_operation(view, error_type: str = "429") -> None:
    (operation,) = view.points(DURATION)
    assert operation.count == 1 and operation.attributes["error.type"] == error_type
    assert {p.attributes.get("error.type"): p.value for p in view.points(ATTEMPTS)} == {error_type: 1}


def test_an_async_call_rate_limited_in_a_background_task_is_one_failed_operation(wire):
    script = Script(RATE_LIMITED)
    client = _openai(script, retries=0, use_async=True)
    raised = _in_background_task(lambda: client.chat.completions.create(model="m", messages=MESSAGES))
    assert isinstance(raised, openai.RateLimitError) and script.requests == 1
    _one_failed_operation(wire.collect())  # recorded when the SDK gave up, not at some later push


def test_a_sync_call_rate_limited_in_a_thread_is_one_failed_operation(wire):
    script = Script(RATE_LIMITED)
    client = _openai(script, retries=0)
    raised = _in_thread(lambda: client.chat.completions.create(model="m", messages=MESSAGES))
    assert isinstance(raised, openai.RateLimitError)
    _one_failed_operation(wire.collect())
    flush_pending()
    _one_failed_operation(wire.collect())  # and never again


@pytest.mark.parametrize("use_async", [False, True], ids=["thread", "task"])
def test_a_call_retried_twice_is_one_successful_operation_of_three_attempts(wire, use_async):
    for counted in (True, False):  # the SDK's call bounds the operation, with or without its retry-count header
        wire.registry.gen_ai.reset()
        script = Script(RATE_LIMITED, RATE_LIMITED, OPENAI_CHAT)
        client = _openai(script, retries=2, use_async=use_async)
        headers = {} if counted else {"x-stainless-retry-count": openai.Omit()}  # a caller may remove it

        def call(client=client, headers=headers):
            return client.chat.completions.create(model="m", messages=MESSAGES, extra_headers=headers)
        assert (_in_background_task if use_async else _in_thread)(call) is None
        assert script.requests == 3
        view = wire.collect()
        (operation,) = view.points(DURATION)
        assert operation.count == 1 and "error.type" not in operation.attributes, f"retry count sent: {counted}"
        assert {p.attributes.get("error.type"): p.value for p in view.points(ATTEMPTS)} == {"429": 2, None: 1}
        assert_tokens(view.points(TOKENS), TRUTH["openai_chat.json"])


@pytest.mark.parametrize("use_async", [False, True], ids=["thread", "task"])
def test_anthropic_calls_are_operations_too(wire, use_async):
    retried = Script(RATE_LIMITED, ANTHROPIC_MESSAGE)
    failing = Script(RATE_LIMITED)

    def call(script: Script, retries: int):
        client = _anthropic(script, retries, use_async)
        return lambda: client.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)
    run = _in_background_task if use_async else _in_thread
    assert run(call(retried, 1)) is None and retried.requests == 2
    view = wire.collect()
    (operation,) = view.points(DURATION)
    assert operation.count == 1 and "error.type" not in operation.attributes
    assert {p.attributes.get("error.type"): p.value for p in view.points(ATTEMPTS)} == {"429": 1, None: 1}

    wire.registry.gen_ai.reset()
    assert isinstance(run(call(failing, 0)), anthropic.RateLimitError)
    _one_failed_operation(wire.collect())


def test_a_call_still_retrying_at_exit_is_recorded_by_the_last_push_exactly_once(wire):
    """Two threads flush at once (the last push and a signal handler): the waiting attempt is recorded once, and
    the call, when its retry goes on after all, starts a new operation instead of recording it again."""
    finished = _openai(Script(RATE_LIMITED), retries=0)
    retrying = _openai(Script(RATE_LIMITED, OPENAI_CHAT), retries=1)
    waiting, go_on = threading.Event(), threading.Event()

    def sleep_for_retry(**_):  # the SDK's wait before its retry, held open by the test
        waiting.set()
        assert go_on.wait(30)
    retrying._sleep_for_retry = sleep_for_retry

    with pytest.raises(openai.RateLimitError):
        finished.chat.completions.create(model="finished", messages=MESSAGES)
    caller = threading.Thread(target=lambda: retrying.chat.completions.create(model="retrying", messages=MESSAGES))
    caller.start()
    try:
        assert waiting.wait(30)
        view = wire.collect()
        assert [p.attributes["gen_ai.request.model"] for p in view.points(DURATION)] == ["finished"], \
            "a finished call is recorded at its end; one still retrying is not yet"

        start = threading.Barrier(2)

        def flush():
            start.wait(10)
            flush_pending()
        flushers = [threading.Thread(target=flush) for _ in range(2)]
        for thread in flushers:
            thread.start()
        for thread in flushers:
            thread.join(10)
        failed = {p.attributes["gen_ai.request.model"]: p.count for p in wire.collect().points(DURATION)}
        assert failed == {"finished": 1, "retrying": 1}
        flush_pending()
    finally:
        go_on.set()
        caller.join(30)
    view = wire.collect()
    counts = {(p.attributes["gen_ai.request.model"], p.attributes.get("error.type")): p.count
              for p in view.points(DURATION)}
    assert counts == {("finished", "429"): 1, ("retrying", "429"): 1, ("retrying", None): 1}

