"""How good is "one output token per content delta" against the usage an upstream reports?

For every wire transcript in tests/llm/transcripts/ that reports output usage, compares the
number of content deltas (what the estimate would record without usage) with the reported output
tokens, and prints the ratio. The transcripts are written from the providers' API references,
so this shows how each format chunks its output, not a model's real token statistics.

    .venv/bin/python benchmarks/estimate_accuracy.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_llm_metrics.llm.endpoints import endpoint_for  # noqa: E402
from otel_llm_metrics.llm.parse import ResponseParser  # noqa: E402

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "llm" / "transcripts"


def main() -> None:
    truth = json.loads((TRANSCRIPTS / "truth.json").read_text())
    print("| transcript | content deltas | reported output tokens | reasoning | estimate / reported |")
    print("|---|---:|---:|---:|---:|")
    for name, expected in sorted(truth.items()):
        if expected["estimated"] or expected["output"] is None or expected["first_content"] is None:
            continue  # no reported usage to compare with, or not a stream
        parser = ResponseParser(endpoint_for("POST", expected["path"]), expected["content_type"].encode())
        parser.feed((TRANSCRIPTS / name).read_bytes())
        parser.finish()
        reported = parser.output_tokens or 0
        ratio = parser.content_events / reported if reported else float("nan")
        print(f"| {name} | {parser.content_events} | {reported} | {parser.reasoning_tokens or '-'} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
