"""Issue 26's check: an SDK's own test suite gives the same outcome per test with otel_llm_metrics installed as without.

Not part of ``make test``: it needs a local checkout of the SDK (openai-python or anthropic-sdk-python) and a venv
that holds that checkout (editable, with its test dependencies) and this project (``pip install -e``). Nothing is
fetched at test time. The suite runs twice, one after the other, in the checkout, with ``-n 0``:

* bare: this file is loaded as a pytest plugin (``-p sdk_suites``) that only records each test's outcome;
* hooked: the same, and at configure time it also calls ``otel_llm_metrics.setup()`` with nothing exported, so the
  httpx/httpx2/aiohttp patches and the SDKs' retry-loop patch (``SyncAPIClient.request``/``AsyncAPIClient.request``)
  are on for the whole session. The run fails if either patch is not found in place.

Then it prints the counts of each run and every test whose outcome differs, with both runs' failure text.
Exit status: 0 same outcomes, 1 some differ, 2 a run did not finish (timeout, crash, hook missing).

    python scripts/sdk_suites.py --checkout /tmp/sdk/openai --python /tmp/venv-openai/bin/python \
        [--out /tmp/sdk/openai-runs] [--timeout 900] [-- tests/test_client.py -k retries]

Arguments after ``--`` go to pytest (test paths, ``-k``). A suite that needs a mock server (openai's and
anthropic's API-resource tests use one on 127.0.0.1:4010, started by their ``scripts/mock``) gives the same
failures in both runs without it, slowly (each such call is retried); start it first, or leave those tests out.

One way to get such a venv, with the SDK's own pins (uv sync keeps to the checkout's uv.lock):

    UV_PROJECT_ENVIRONMENT=/tmp/venv-openai uv sync --frozen --group dev --extra aiohttp  # in the checkout
    VIRTUAL_ENV=/tmp/venv-openai uv pip install -e .                                      # in this repo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT_VAR = "SDK_SUITES_OUT"  # where the plugin writes a run's outcomes (JSON)
HOOK_VAR = "SDK_SUITES_HOOK"  # "1": install otel_llm_metrics for the session
DETAIL_CHARS = 6000

# -- the plugin (imported by pytest as ``sdk_suites``) ------------------------------------------------------
_outcomes: dict[str, str] = {}
_details: dict[str, str] = {}
_hook: dict[str, Any] = {}
_reader: list[Any] = []


def _wrapped(owner: Any, name: str) -> bool:
    return hasattr(owner.__dict__.get(name), "__wrapped__")


def pytest_configure(config: Any) -> None:
    if os.environ.get(HOOK_VAR) != "1":
        return
    import importlib

    import otel_llm_metrics

    telemetry = otel_llm_metrics.setup(metrics_exporters=("none",), traces_exporter=("none",))
    try:  # read in memory at the end, to show the calls were measured (nothing leaves the process)
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        _reader.append(InMemoryMetricReader())
        telemetry.meter_provider.add_metric_reader(_reader[0])
    except Exception as error:  # an SDK without add_metric_reader: the check stands without the count
        _hook["reader"] = f"none: {error!r}"
    for module in ("httpx", "httpx2"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        _hook[f"{module}.Client._send_single_request"] = _wrapped(mod.Client, "_send_single_request")
        _hook[f"{module}.AsyncClient._send_single_request"] = _wrapped(mod.AsyncClient, "_send_single_request")
    for module in ("openai._base_client", "anthropic._base_client"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        _hook[f"{module}.SyncAPIClient.request"] = _wrapped(mod.SyncAPIClient, "request")
        _hook[f"{module}.AsyncAPIClient.request"] = _wrapped(mod.AsyncAPIClient, "request")
    if not _hook or not all(v is True for k, v in _hook.items() if k != "reader"):
        raise RuntimeError(f"sdk_suites: otel_llm_metrics' patches not all in place: {_hook}")


def _text(report: Any) -> str:
    text = getattr(report, "longreprtext", "") or str(report.longrepr or "")
    return text[-DETAIL_CHARS:]


def pytest_runtest_logreport(report: Any) -> None:
    node = report.nodeid
    xfail = hasattr(report, "wasxfail")
    if report.when == "setup":
        if report.failed:
            _outcomes[node] = "error"
        elif report.skipped:
            _outcomes[node] = "xfailed" if xfail else "skipped"
            _details[node] = _text(report)[-300:]
    elif report.when == "call":
        if report.passed:
            _outcomes[node] = "xpassed" if xfail else "passed"
        elif report.failed:
            _outcomes[node] = "failed"
        else:
            _outcomes[node] = "xfailed" if xfail else "skipped"
    elif report.failed:  # teardown
        _outcomes[node] = _outcomes.get(node, "passed") + "+teardown-error"
    if report.failed:
        _details[node] = (_details.get(node, "") + f"--- {report.when} ---\n" + _text(report))[-DETAIL_CHARS:]


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _outcomes[f"collect::{report.nodeid}"] = "error"
        _details[f"collect::{report.nodeid}"] = _text(report)


def _measured() -> dict[str, int]:
    """Data points per metric, summed over series (a histogram's count): what the hook recorded in the session."""
    counts: dict[str, int] = {}
    data = _reader[0].get_metrics_data() if _reader else None
    for resource in getattr(data, "resource_metrics", ()) or ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = metric.data.data_points
                counts[metric.name] = counts.get(metric.name, 0) + sum(
                    int(getattr(p, "count", None) if getattr(p, "count", None) is not None else p.value)
                    for p in points)
    return counts


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _reader:
        try:
            _hook["measured"] = _measured()
        except Exception as error:
            _hook["measured"] = f"unread: {error!r}"
    path = os.environ.get(OUT_VAR)
    if path:
        Path(path).write_text(json.dumps({"exitstatus": int(exitstatus), "hook": _hook, "outcomes": _outcomes,
                                          "details": _details}, indent=1))


# -- the runner --------------------------------------------------------------------------------------------
def _run(label: str, args: argparse.Namespace, pytest_args: list[str], hooked: bool) -> dict[str, Any] | None:
    out = args.out / f"{label}.json"
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), env.get("PYTHONPATH")]))
    env[OUT_VAR] = str(out)
    env[HOOK_VAR] = "1" if hooked else "0"
    command = [args.python, "-m", "pytest", "-p", "sdk_suites", "-p", "no:cacheprovider", "-n", "0", "-q",
               *pytest_args]
    log = args.out / f"{label}.log"
    print(f"== {label}: {' '.join(command)} (log {log})", flush=True)
    started = time.monotonic()
    with log.open("w") as stream:
        try:
            done = subprocess.run(command, cwd=args.checkout, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                  timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"   {label}: timed out after {args.timeout:.0f} s", flush=True)
            return None
    print(f"   {label}: exit {done.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    if not out.exists():
        print(f"   {label}: no outcomes written; see {log}", flush=True)
        return None
    return json.loads(out.read_text())


def _counts(outcomes: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "nothing"


def main() -> int:
    argv = sys.argv[1:]
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", type=Path, required=True, help="the SDK's work tree (its tests/ inside)")
    parser.add_argument("--python", required=True, help="the venv's python: the SDK, its test deps, this project")
    parser.add_argument("--out", type=Path, help="where to keep logs and outcomes (default: a temp folder)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run (default 900)")
    args = parser.parse_args(argv)
    if args.out is None:
        import tempfile
        args.out = Path(tempfile.mkdtemp(prefix="sdk_suites-"))
    args.out.mkdir(parents=True, exist_ok=True)

    bare = _run("bare", args, pytest_args, hooked=False)
    hooked = _run("hooked", args, pytest_args, hooked=True) if bare is not None else None
    if bare is None or hooked is None:
        return 2
    measured = hooked["hook"].pop("measured", None)
    print(f"hook in place: {hooked['hook']}")
    if isinstance(measured, dict):
        print("measured in the hooked run: " + (", ".join(f"{k}={v}" for k, v in sorted(measured.items())
                                                         if k.startswith("gen_ai.")) or "no gen_ai metric"))
    elif measured is not None:
        print(f"measured in the hooked run: {measured}")
    print(f"bare:   {len(bare['outcomes'])} tests: {_counts(bare['outcomes'])}")
    print(f"hooked: {len(hooked['outcomes'])} tests: {_counts(hooked['outcomes'])}")
    differ = sorted(t for t in set(bare["outcomes"]) | set(hooked["outcomes"])
                    if bare["outcomes"].get(t) != hooked["outcomes"].get(t))
    for test in differ:
        print(f"\nDIFFERS {test}: bare {bare['outcomes'].get(test, 'absent')}, "
              f"hooked {hooked['outcomes'].get(test, 'absent')}")
        for label, run in (("bare", bare), ("hooked", hooked)):
            if test in run["details"] and run["outcomes"].get(test) not in ("passed", "skipped"):
                print(f"  [{label}]\n" + "\n".join("    " + line for line in run["details"][test].splitlines()))
    print(f"\n{len(differ)} test(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
