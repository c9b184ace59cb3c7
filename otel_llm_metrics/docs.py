"""The README's generated tables: ``python -m otel_llm_metrics.docs [--write README.md]``.

Without ``--write`` it prints them; with it, it replaces the text between the
``<!-- catalogue:start/end -->`` and ``<!-- configuration:start/end -->`` markers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .catalogue import markdown_table
from .config import settings_table

TABLES = {"catalogue": markdown_table, "configuration": settings_table}


def rewrite(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README has no <!-- {name}:start --> ... <!-- {name}:end --> markers")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + m.group(2), text)
    return text


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        path = Path(sys.argv[2])
        path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        for name, make in TABLES.items():
            print(f"## {name}\n\n{make()}\n")
