"""scripts/demo.sh runs its lanes side by side: a failing stage must stop the whole demo, say which stage
failed with the end of its log, and leave no lane running behind it."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_python(tmp_path: Path, fail_on: str) -> Path:
    """A stand-in interpreter: fails (exit 3) for commands containing ``fail_on``; every training sleeps
    5 s and then leaves a marker, so a lane left running would be visible; runs ``-c`` snippets for real."""
    marker = tmp_path / "still_running"
    script = tmp_path / "python"
    script.write_text(
        f"""#!/usr/bin/env bash
case "$*" in
  -c*) exec {sys.executable} "$@" ;;
  *"{fail_on}"*) sleep 1; echo "boom: cannot read the raw folder"; exit 3 ;;
  *fer_jax.train*) sleep 5; touch {marker}; echo "trained" ;;
  *) sleep 0.2; echo "fine" ;;
esac
"""
    )
    script.chmod(0o755)
    return marker


@pytest.mark.parametrize(
    "fail_on, lane, stage",
    [
        ("--kind see", "see", "synthesize"),
        ("--kind dfew", "dfew", "synthesize"),
        # the see lane fails while its child, the rgb lane, trains: rgb must be stopped as well
        ("configs/demo_see.py", "see", "train MCO-E Net"),
    ],
)
def test_failed_stage_stops_every_lane(tmp_path, fail_on, lane, stage):
    marker = _fake_python(tmp_path, fail_on)
    env = {**os.environ, "PY": str(tmp_path / "python"), "DEMO_DIR": str(tmp_path / "demo"), "DEMO_TICK": "1"}
    t = time.monotonic()
    p = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - t
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert re.search(rf"\] {lane} +FAILED {stage}", out), out
    assert "boom: cannot read the raw folder" in out  # the end of the failing lane's log is shown
    assert "report" not in p.stdout.split("FAILED", 1)[1]  # no report after a failure
    assert elapsed < 5, f"the other lane was waited for instead of stopped ({elapsed:.1f} s)"
    time.sleep(6)  # a 5-s training would have finished by now had its lane survived
    assert not marker.exists(), "a lane kept running after the demo stopped"
