"""Where one measured LLM call's cost goes, at the HTTP client (httpx2, bench_client.py's raw cases).

Two profiles, kept so that each round can be compared with the last (docs/performance.md, round eleven):

- ``bytecodes``: how many bytecodes ours adds to one call, by file and by function (``sys.settrace`` opcode
  events, one call with ours on minus one bare, after a warm-up). A count, so the same on any machine and run.
- ``split``: the call timed with ours knocked out one piece at a time (CPU time, variants taking turns, medians):
  ``wrapper``: the hooks installed, every call let through unmeasured; ``stub``: every call handed a do-nothing
  attempt (the stream wrapped, its chunks passed to it); ``unrecorded``: the real attempt (headers, request
  model, parser), its recording skipped; ``ours``: everything. Each row's "added" is over bare in the same
  repeat, so the difference between two rows is what that piece costs in place, between the client's own work.

    .venv/bin/python benchmarks/profile_client_call.py bytecodes [--case chat|stream1|stream] [--top 25]
    .venv/bin/python benchmarks/profile_client_call.py split [--case chat|stream1|stream] [--calls 3000]

The knock-outs replace ``Hook.attempt`` and ``Attempt.end_operation`` for the length of their batch only; they
exist here, never in the package.
"""

from __future__ import annotations

import argparse
import collections
import gc
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from time import process_time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from benchmarks.bench_client import _ours, _raw_cases  # noqa: E402


def _where(code: Any) -> str:
    name = code.co_filename
    for marker in ("site-packages/", str(ROOT) + "/"):
        name = name.split(marker)[-1]
    return name


def _bytecodes(call: Callable[[], None]) -> collections.Counter:
    """Bytecodes run by one ``call``, by (file, function)."""
    counts: collections.Counter = collections.Counter()

    def trace(frame: Any, event: str, arg: Any) -> Callable[..., Any]:
        frame.f_trace_opcodes = True
        key = (_where(frame.f_code), frame.f_code.co_name)

        def opcode(frame: Any, event: str, arg: Any) -> Callable[..., Any]:
            if event == "opcode":
                counts[key] += 1
            return opcode
        return opcode

    for _ in range(50):  # warm: the series bound, the header layout and the price plan known
        call()
    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return counts


def bytecodes(case: str, top: int) -> None:
    call = _raw_cases(httpx2, 1, 1)[case][0]
    bare = _bytecodes(call)
    variant = _ours("ours", "httpx2")  # bench_client.py's own: one in-memory reader, the price table loaded
    variant.on()
    try:
        ours = _bytecodes(call)
    finally:
        variant.off()
    added = {key: ours[key] - bare[key] for key in set(ours) | set(bare)}
    print(f"httpx2 {case}: bare runs {sum(bare.values()):,} bytecodes per call, ours adds {sum(added.values()):,}")
    by_file: collections.Counter = collections.Counter()
    for (where, _), count in added.items():
        by_file[where] += count
    print("\n| file | bytecodes added |\n|---|---:|")
    for where, count in by_file.most_common():
        if count:
            print(f"| {where} | {count:,} |")
    print("\n| function | bytecodes added |\n|---|---:|")
    for (where, function), count in sorted(added.items(), key=lambda item: -item[1])[:top]:
        print(f"| {where}:{function} | {count:,} |")


class _DoNothing:
    """An attempt that measures nothing: what the hooks and the stream wrapper cost around it."""

    def answered(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def chunk(self, data: bytes) -> None:
        pass

    def end(self, body_complete: bool = True) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        pass

    def decoding(self) -> None:
        pass


def split(case: str, calls: int, repeats: int) -> None:
    from otel_llm_metrics.client import hook
    from otel_llm_metrics.client.call import Attempt

    call = _raw_cases(httpx2, 1, 1)[case][0]
    ours = _ours("ours", "httpx2")
    attempt, end_operation = hook.Hook.attempt, Attempt.end_operation

    def on(attempt_with: Callable[..., Any] | None = None, record: bool = True) -> Callable[[], None]:
        def switch_on() -> None:
            ours.on()
            if attempt_with is not None:
                hook.Hook.attempt = attempt_with  # type: ignore[method-assign]
            if not record:
                Attempt.end_operation = lambda self: None  # type: ignore[method-assign]
        return switch_on

    def off() -> None:
        ours.off()
        hook.Hook.attempt, Attempt.end_operation = attempt, end_operation  # type: ignore[method-assign]

    variants: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
        ("bare", lambda: None, lambda: None),
        ("wrapper", on(lambda self, *args: None), off),
        ("stub", on(lambda self, *args: _DoNothing()), off),
        ("unrecorded", on(record=False), off),
        ("ours", on(), off)]
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for repeat in range(repeats):
        turn = repeat % len(variants)
        for name, switch_on, switch_off in variants[turn:] + variants[:turn]:
            switch_on()
            try:
                for _ in range(calls // 10):
                    call()
                gc.collect()
                started = process_time()
                for _ in range(calls):
                    call()
                times[name].append((process_time() - started) / calls * 1e6)
            finally:
                switch_off()
    bare = statistics.median(times["bare"])
    print(f"httpx2 {case}, {calls} calls x {repeats} repeats, CPU time per call (medians)\n")
    print("| variant | us per call | added over bare |\n|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median - bare:+.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", choices=("bytecodes", "split"))
    parser.add_argument("--case", choices=("chat", "stream1", "stream"), default="chat")
    parser.add_argument("--top", type=int, default=25, help="bytecodes: functions listed")
    parser.add_argument("--calls", type=int, default=3000, help="split: calls per variant and repeat")
    parser.add_argument("--repeats", type=int, default=7, help="split: repeats")
    args = parser.parse_args()
    if args.profile == "bytecodes":
        bytecodes(args.case, args.top)
    else:
        split(args.case, args.calls, args.repeats)


if __name__ == "__main__":
    main()
