"""``make test``'s runner: the whole suite on the newest Python, and the unit suite on the others at the same time.

The unit sessions (CPU-bound, a few minutes each) run beside the whole suite at the lowest scheduling priority
(``nice``), so they use the time the integration tests spend waiting on their servers without slowing those
down; their output follows the whole suite's. The exit status fails if either failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def main() -> int:
    nox = [sys.executable, "-m", "nox"]
    with tempfile.TemporaryFile(mode="w+b") as unit_log:
        niced = ["nice", "-n", "19"] if os.name == "posix" else []
        unit = subprocess.Popen([*niced, *nox, "-s", "unit"], stdout=unit_log, stderr=subprocess.STDOUT)
        try:
            full = subprocess.call([*nox, "-s", "full"])
        finally:
            unit_code = unit.wait()
        unit_log.seek(0)
        sys.stdout.flush()
        sys.stdout.buffer.write(unit_log.read())
        sys.stdout.flush()
    print(f"run_suites: whole suite {'passed' if full == 0 else 'FAILED'}, "
          f"unit suites {'passed' if unit_code == 0 else 'FAILED'}", flush=True)
    return full or unit_code


if __name__ == "__main__":
    sys.exit(main())
