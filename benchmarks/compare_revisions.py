"""Same-run comparison of the hot path between a git revision and the working tree.

Checks REV out into a temporary worktree, then runs ``bench_asgi.py`` on both trees in
alternation (so that machine noise hits both alike) and prints the median added cost of each.

    .venv/bin/python benchmarks/compare_revisions.py REV [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_ROW = re.compile(r"^\| otel_llm_metrics \| [\d.]+ \| ([+-][\d.]+) \| [\d.]+ \| ([+-][\d.]+) \| ([+-][\d.]+) \|$", re.M)


def _bench(tree: Path) -> tuple[float, float, float]:
    """(added per small request, per 100-chunk stream, per chunk), in microseconds."""
    output = subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_asgi.py"), "--only",
                             "otel_llm_metrics", "--requests", "40000", "--repeats", "20"],
                            cwd=tree, capture_output=True, text=True, check=True).stdout
    found = _ROW.search(output)
    if found is None:
        raise SystemExit(f"no otel_llm_metrics row in the output of {tree}:\n{output}")
    small, stream, chunk = (float(v) for v in found.groups())
    return small, stream, chunk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-base-") as base:
        subprocess.run(["git", "worktree", "add", "--detach", base, args.rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            _bench(Path(base)), _bench(ROOT)  # warm-up round, not counted
            results: dict[str, list[tuple[float, float, float]]] = {args.rev: [], "working tree": []}
            for _ in range(args.rounds):
                results[args.rev].append(_bench(Path(base)))
                results["working tree"].append(_bench(ROOT))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", base], cwd=ROOT, check=False)
    print(f"Added cost over the bare app, medians of {args.rounds} alternating rounds (us)\n")
    print("| tree | small request | 100-chunk stream | per chunk |\n|---|---:|---:|---:|")
    for name, rows in results.items():
        small, stream, chunk = (statistics.median(column) for column in zip(*rows, strict=True))
        print(f"| {name} | {small:+.1f} | {stream:+.1f} | {chunk:+.3f} |")


if __name__ == "__main__":
    main()
