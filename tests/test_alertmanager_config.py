"""The Alertmanager example is valid for amtool, which does reject a broken one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.servers import require_binary

EXAMPLE = Path(__file__).resolve().parents[1] / "prometheus" / "alertmanager.yml"


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("amtool"), "check-config", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_example_config_is_valid():
    result = _check(EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 receivers" in result.stdout


def test_amtool_rejects_an_undefined_receiver(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(EXAMPLE.read_text().replace("receiver: slack", "receiver: nobody"))
    assert _check(broken).returncode == 1
