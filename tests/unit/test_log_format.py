"""OTEL_LLM_METRICS_LOG_FORMAT=json (issue 19): one JSON object per line, with the trace, span and request ids
of the request a record was made in; the default (text) leaves logging exactly as it was.

The request fields (request_id, http.route) need the middleware to set ``log_format.REQUEST`` while it serves
a request (the hook in ``MetricsMiddleware.__call__``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from starlette.routing import Route

from otel_llm_metrics.http.middleware import Exchange
from otel_llm_metrics.log_format import REQUEST, JsonFormatter
from tests import local_http
from tests.integration.servers import BIN, ROOT, free_port, wait_for

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX32, HEX16 = re.compile(r"^[0-9a-f]{32}$"), re.compile(r"^[0-9a-f]{16}$")
NEEDS_HOOK = "no request_id: is the middleware hook in place (log_format.REQUEST set in MetricsMiddleware.__call__)?"


def _record(msg: object = "hello %s", args: tuple = ("world",), level: int = logging.WARNING,
            exc_info: object = None) -> logging.LogRecord:
    return logging.getLogger("app.test").makeRecord("app.test", level, __file__, 1, msg, args, exc_info)


def _format(record: logging.LogRecord) -> dict:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


# -- the formatter --------------------------------------------------------------------------------------------
def test_a_record_outside_any_request_has_the_four_fields_and_no_ids():
    record = _record()
    fields = _format(record)
    assert fields == {"time": fields["time"], "level": "WARNING", "logger": "app.test", "message": "hello world"}
    assert TIME.match(fields["time"])
    expected = datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert fields["time"] == f"{expected}.{int(record.msecs):03d}Z"


def test_inside_a_span_the_line_carries_its_trace_and_span_ids():
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        fields = _format(_record())
    context = span.get_span_context()
    assert fields["trace_id"] == format(context.trace_id, "032x") and HEX32.match(fields["trace_id"])
    assert fields["span_id"] == format(context.span_id, "016x") and HEX16.match(fields["span_id"])
    assert "trace_id" not in _format(_record()), "no ids once the span has ended"


def test_the_request_being_served_gives_its_id_and_route():
    route = Route("/hello/{name}", lambda request: None)
    request = SimpleNamespace(request_id=b"req-1", route=None, scope={"route": route}, root_path="")
    request.route_now = lambda: Exchange.route_now(request)  # the middleware's own reading of it
    token = REQUEST.set(request)
    try:
        fields = _format(_record())
        assert (fields["request_id"], fields["http.route"]) == ("req-1", "/hello/{name}"), "route from the scope"
        request.route = "/recorded"
        assert _format(_record())["http.route"] == "/recorded", "the route the middleware recorded wins"
        request.scope, request.route = {}, None
        assert "http.route" not in _format(_record()), "no route matched (yet)"
    finally:
        REQUEST.reset(token)
    assert "request_id" not in _format(_record())


def test_exception_and_stack_text_are_kept_on_the_one_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record("failed", (), logging.ERROR, sys.exc_info())
    fields = _format(record)
    assert fields["message"] == "failed"
    assert fields["exception"].startswith("Traceback") and "ValueError: bad\nvalue" in fields["exception"]
    record = _record("here", ())
    record.stack_info = "Stack (most recent call last):\n  File x"
    assert _format(record)["stack"].startswith("Stack")


@pytest.mark.parametrize(("msg", "args", "message"), [
    ({"a": 1}, (), "{'a': 1}"), (42, (), "42"), (ValueError("x"), (), "x"),
    ("line one\nline two", (), "line one\nline two"),
    ("100% é ✓", (), "100% é ✓"), ("%(user)s", ({"user": "bob"},), "bob"),
])
def test_messages_that_are_not_plain_strings(msg, args, message):
    assert _format(_record(msg, args))["message"] == message


def test_a_record_whose_arguments_do_not_fit_still_gives_a_line():
    fields = _format(_record("count %d of %s", ("x",)))
    assert fields["message"] == "count %d of %s" and fields["args"] == "('x',)"
    assert fields["format_error"].startswith("TypeError")

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    fields = _format(_record(Unprintable(), ()))
    assert fields["level"] == "WARNING" and "Unprintable object" in fields["message"]
    fields = _format(_record("%s", (Unprintable(),)))
    assert "format_error" in fields and fields["args"].startswith("<")
    broken = _record("with a broken exception", ())
    broken.exc_info = ("not", "an", "exception")
    fields = _format(broken)
    assert (fields["message"], fields["level"]) == ("with a broken exception", "WARNING") and "format_error" in fields


def test_formatting_costs_microseconds():
    """Not a benchmark: a guard against a formatter that does work it need not (reported: about 3 us here)."""
    import timeit

    formatter, record = JsonFormatter(), _record()
    per_record = min(timeit.repeat(lambda: formatter.format(record), number=2000, repeat=5)) / 2000
    assert per_record < 50e-6, f"{per_record * 1e6:.1f} us a record"


# -- wiring -------------------------------------------------------------------------------------------------------
def _run(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "OTEL_METRICS_EXPORTER": "none", "PYTHONWARNINGS": "ignore",
                                         "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"),
                                                                                      str(ROOT)])), **(env or {})})


STATE = """
import logging
def state():
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "app", "otel_llm_metrics"]
    return [(name, logging.getLogger(name).level, logging.getLogger(name).propagate,
             [(h, h.formatter) for h in logging.getLogger(name).handlers]) for name in names]
"""


def test_by_default_setup_leaves_logging_exactly_as_it_was():
    done = _run(STATE + textwrap.dedent("""
        import logging, sys, uvicorn.config
        from starlette.applications import Starlette
        import otel_llm_metrics
        from otel_llm_metrics import log_format
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        uvicorn.config.Config("x:app").configure_logging()
        before, hooks = state(), list(sys.meta_path)
        telemetry = otel_llm_metrics.setup(Starlette())
        assert telemetry.settings.log_format == "text"
        assert state() == before, (before, state())
        # wrapt's one finder follows the SDKs imported later (client.operation); logging adds none
        added = [hook for hook in sys.meta_path if hook not in hooks and type(hook).__module__ != "wrapt.importer"]
        assert not log_format._installed and not log_format._watching and not added
        assert not hasattr(uvicorn.config.Config.configure_logging, "_otel_llm_metrics_json")
        print("UNCHANGED")
    """), {"OTEL_LLM_METRICS_LOG_FORMAT": ""})
    assert done.returncode == 0 and "UNCHANGED" in done.stdout, done.stdout + done.stderr


def test_json_reformats_the_existing_root_console_handler_instead_of_adding_a_second():
    done = _run("""
        import logging
        logging.basicConfig(level=logging.INFO)
        import otel_llm_metrics
        otel_llm_metrics.setup(log_format="json")
        (handler,) = logging.getLogger().handlers
        assert type(handler.formatter).__name__ == "JsonFormatter"
        logging.getLogger("app").info("once")
    """)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["message"] for line in lines if line["logger"] == "app"] == ["once"]


def test_json_adds_a_stderr_handler_and_restyles_uvicorn_configured_afterwards_but_not_your_log_config(tmp_path):
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({"version": 1, "disable_existing_loggers": False,
                                  "formatters": {"mine": {"format": "MINE %(message)s"}},
                                  "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "mine",
                                                     "stream": "ext://sys.stderr"}},
                                  "loggers": {"uvicorn": {"handlers": ["h"], "propagate": False}}}))
    done = _run(f"""
        import logging
        import otel_llm_metrics
        otel_llm_metrics.setup()
        import uvicorn.config
        logging.getLogger("app").warning("from the app")
        uvicorn.config.Config("x:app").configure_logging()
        logging.getLogger("uvicorn.error").info("from uvicorn")
        logging.getLogger("uvicorn.access").info("an access line")
        uvicorn.config.Config("x:app", log_config={str(config)!r}).configure_logging()
        logging.getLogger("uvicorn.error").info("with your log config")
    """, {"OTEL_LLM_METRICS_LOG_FORMAT": "json"})
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    assert err[-1] == "MINE with your log config", "a log config of yours keeps its formatters"
    lines = [json.loads(line) for line in err[:-1]]
    assert [(line["logger"], line["message"]) for line in lines] == [("app", "from the app"),
                                                                     ("uvicorn.error", "from uvicorn")]
    assert json.loads(done.stdout)["message"] == "an access line", "uvicorn's access log stays on stdout, as JSON"


# -- a real server --------------------------------------------------------------------------------------------
APP = '''
"""Logs from a handler, and a slow route; SETUP_MODE wraps it with setup() itself."""
import asyncio
import logging
import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    logging.getLogger("app").warning("serving %s", request.path_params["name"])
    return PlainTextResponse("hello")


async def slow(request):
    await asyncio.sleep(0.3)
    return PlainTextResponse("slow")


def in_a_thread(request):
    logging.getLogger("app").warning("from a thread")
    return PlainTextResponse("sync")


app = Starlette(routes=[Route("/hello/{name}", hello), Route("/slow", slow), Route("/sync", in_a_thread)])
if os.environ.get("SETUP_MODE"):
    import otel_llm_metrics

    otel_llm_metrics.setup(app)
'''
PARENT_TRACE, PARENT_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("zero_code", [True, False], ids=["opentelemetry-instrument", "setup"])
def test_a_served_request_logs_json_lines_with_its_trace_and_request_ids(tmp_path, zero_code):
    (tmp_path / "log_format_app.py").write_text(APP)
    port = free_port()
    command = [str(BIN / "uvicorn"), "log_format_app:app", "--host", "127.0.0.1", "--port", str(port)]
    if zero_code:
        command = [str(BIN / "opentelemetry-instrument"), *command]
    env = {**os.environ, "OTEL_LLM_METRICS_LOG_FORMAT": "json", "OTEL_TRACES_EXPORTER": "console",
           "OTEL_LLM_METRICS_SLOW_REQUEST_SECONDS": "0.1", "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port()),
           "PYTHONWARNINGS": "ignore", "SETUP_MODE": "" if zero_code else "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH"), str(ROOT)]))}
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=err, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def answered(path: str, **headers: str) -> httpx.Response | None:
            assert server.poll() is None, err_path.read_text()
            return local_http.get(url + path, headers=headers, timeout=5)

        first = wait_for(lambda: answered("/hello/x"), "uvicorn answering")
        child = answered("/hello/bob", **{"x-request-id": "my-req-1",
                                          "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
        slow = answered("/slow")
        threaded = answered("/sync")
        lines = wait_for(lambda: _slow_logged(err_path), "the slow-request log line on stderr")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
            pytest.fail(f"uvicorn did not exit on SIGTERM:\n{err_path.read_text()}")

    lines = [json.loads(line) for line in err_path.read_text().splitlines() if line.strip()]  # each a JSON object
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines), lines
    assert any(line["logger"] == "uvicorn.error" and line["message"].startswith("Started server process")
               for line in lines), "uvicorn's own lines are JSON too"
    assert any(line["logger"] == "otel_llm_metrics" and "metrics on http://" in line["message"] for line in lines)

    by_message = {line["message"]: line for line in lines if line["logger"] == "app"}
    plain = by_message["serving x"]
    assert plain.get("request_id") == first.headers["x-request-id"], NEEDS_HOOK
    assert plain["trace_id"] == first.headers["x-request-id"], "no incoming id: the request id is the trace id"
    assert HEX16.match(plain["span_id"]) and plain["http.route"] == "/hello/{name}"
    joined = by_message["serving bob"]
    assert (joined["trace_id"], joined["request_id"]) == (PARENT_TRACE, "my-req-1") == (
        PARENT_TRACE, child.headers["x-request-id"])
    assert joined["span_id"] != PARENT_SPAN, "the server span's id, a child of the caller's"
    thread = by_message["from a thread"]  # a sync endpoint, run in the thread pool
    assert thread["trace_id"] == thread["request_id"] == threaded.headers["x-request-id"]

    # the /slow request's line (on a loaded machine another request may pass the 0.1 s threshold too)
    (slow_line,) = [line for line in lines if line["logger"] == "otel_llm_metrics.slow"
                    and line.get("http.route") == "/slow"]
    assert slow_line["level"] == "WARNING" and slow_line["message"].startswith("slow request: GET /slow")
    assert slow_line["trace_id"] == slow.headers["x-request-id"] == slow_line.get("request_id"), NEEDS_HOOK
    assert slow_line["http.route"] == "/slow"

    access = [json.loads(line) for line in out_path.read_text().splitlines() if '"logger":"uvicorn.access"' in line]
    (bob,) = [line for line in access if "/hello/bob" in line["message"]]
    assert (bob["trace_id"], bob["request_id"]) == (PARENT_TRACE, "my-req-1"), "access lines, on stdout, as JSON"


def _slow_logged(path: Path) -> bool:
    return "otel_llm_metrics.slow" in path.read_text()
