"""The suite on every Python the package claims (3.10 to 3.13); ``make test`` runs ``full`` and, beside it, ``unit``.

- ``full``: the whole suite (unit and integration) on the newest claimed version that is present;
- ``unit``: the unit suite on every other claimed version that is present.

Each session runs its tests on several processes (pytest-xdist; this is a 2-core machine): most integration
tests wait on real servers, scrapes and export intervals more than they compute, so ``full`` runs three at once
and ``unit`` two. With two, the whole suite left the cores a fifth idle (84 % busy on average, 20 to 55 % in its
last minute and a half); with three, they stay busy and a fresh clone's ``make test`` took 7 min 10 s against
9 min 15 s, the same tests passing. The tests are independent (free ports, their own servers and directories);
pass ``-- -n 0`` to run one at a time.

Interpreters are found the ordinary way, on PATH and in pyenv's versions folder (where pyenv's shims
name a version that is installed but not active, the version's own ``bin`` comes first). A version
that is not there is named and left out; one that is there and fails, fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nox

CLAIMED = ["3.10", "3.11", "3.12", "3.13"]  # keep in step with pyproject's classifiers
nox.options.error_on_missing_interpreters = False  # named below instead; nox's CI default would fail the run
nox.options.reuse_venv = "yes"
# uv makes each session's virtualenv and installs the test extra in about 8 s, against 84 s for venv and pip
# (measured here, Python 3.12, a cold uv cache); nox falls back to virtualenv where uv is not installed.
nox.options.default_venv_backend = "uv|virtualenv"
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")  # the interpreters found below, never one fetched
# uv installs no bytecode, and where the environment sets PYTHONDONTWRITEBYTECODE (this machine's does) no Python
# writes any either: every test process and every server a test starts then compiled each module it imported,
# again and again (zero code's start-up: 2.3 s of CPU against 1.0 s with bytecode; `import litellm`: 8.2 s against
# 4.4 s; measured here). The sessions' own venvs and the checkout's ignored __pycache__ folders keep it instead.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _pyenv_bins() -> list[str]:
    """Each installed pyenv version's bin, newest patch release first."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    versions = [p for p in root.glob("*") if re.fullmatch(r"\d+\.\d+\.\d+", p.name) and (p / "bin").is_dir()]
    versions.sort(key=lambda p: tuple(int(n) for n in p.name.split(".")), reverse=True)
    return [str(p / "bin") for p in versions]


os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])
PRESENT = [version for version in CLAIMED if shutil.which(f"python{version}")]
MISSING = [version for version in CLAIMED if version not in PRESENT]
if MISSING:
    print(f"nox: Python {', '.join(MISSING)} not found on PATH or under pyenv's versions: not tested here")
UNIT_PARALLEL = ("-n", "2")  # the unit sessions': they compute, on cores the whole suite leaves
FULL_PARALLEL = ("-n", "3")  # the whole suite's: its integration tests mostly wait
NEWEST = PRESENT[-1:]  # empty only where no claimed version is present: then nothing runs, and nox says so


@nox.session(python=NEWEST)
def full(session: nox.Session) -> None:
    """Every test, unit and integration, against real servers."""
    session.install("-e", ".[test]")
    session.run("pytest", *FULL_PARALLEL, "--durations=20", *session.posargs)  # the slowest named in CI's output


@nox.session(python=[version for version in PRESENT if version not in NEWEST])
def unit(session: nox.Session) -> None:
    """The unit tests: everything but the integration tests."""
    session.install("-e", ".[test]")
    session.run("pytest", *UNIT_PARALLEL, "--ignore=tests/integration", "-m", "not integration", *session.posargs)
