"""The Makefile's install step: pip's output stays in .venv/install.log; a failed install shows its end.

A fake interpreter stands in for python3 and the venv's pip (no install, no network): it makes the venv's
``bin/python`` on ``-m venv`` and otherwise prints what pip prints, a warning on stderr included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = """#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
echo "Successfully installed fer_jax (fake)"
echo "WARNING: fer-jax 0.1 does not provide the extra 'nonsense'" >&2
if [ -n "${FAKE_PIP_FAIL:-}" ]; then echo "ERROR: No matching distribution found for jax" >&2; exit 1; fi
"""


def _make(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    return subprocess.run(
        ["make", "venv", f"PYTHON={fake}"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_install_warnings_stay_in_the_log(tmp_path):
    p = _make(tmp_path)
    assert p.returncode == 0, p.stderr
    assert "WARNING" not in p.stdout + p.stderr
    assert "install.log" in p.stdout  # the one line that says where the output went
    log = (tmp_path / ".venv" / "install.log").read_text()
    assert "WARNING: fer-jax 0.1 does not provide" in log and "Successfully installed" in log
    assert (tmp_path / ".venv" / ".installed").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_failed_install_shows_the_end_of_the_log_and_fails(tmp_path):
    p = _make(tmp_path, FAKE_PIP_FAIL="1")
    assert p.returncode != 0
    assert "ERROR: No matching distribution found for jax" in p.stdout + p.stderr
    assert "install failed" in p.stderr
    assert not (tmp_path / ".venv" / ".installed").exists()  # the next make tries again
