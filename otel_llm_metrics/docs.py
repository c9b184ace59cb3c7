"""The generated tables in docs/: ``python -m otel_llm_metrics.docs [--write]``.

Without ``--write`` it prints them; with it, it replaces the text between the
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers of each table's page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .catalogue import LATEST_EXPERIMENTAL, markdown_table
from .config import settings_table

DOCS = Path(__file__).resolve().parent.parent / "docs"
TABLES = {"catalogue": (markdown_table, "catalogue.md"),
          "latest-experimental": (lambda: markdown_table(LATEST_EXPERIMENTAL), "catalogue.md"),
          "configuration": (settings_table, "configuration.md")}


def rewrite(name: str, text: str) -> str:
    make = TABLES[name][0]
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- {name}:start --> ... <!-- {name}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + make() + m.group(2), text)


if __name__ == "__main__":
    for name, (make, page) in TABLES.items():
        if sys.argv[1:] == ["--write"]:
            path = DOCS / page
            path.write_text(rewrite(name, path.read_text(encoding="utf-8")), encoding="utf-8")
        else:
            print(f"## {name}\n\n{make()}\n")
