"""benchmarks/xla_cpu_flags.py: the table says which flag set changed float results and which failed."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import xla_cpu_flags as X  # noqa: E402


def test_table_reports_the_logit_difference_from_the_default_flags_and_errors():
    results = {
        "default": {
            "resnet18": {"images_per_s": 100.0, "logits": [1.0, 2.0]},
            "demo_see": {"step_ms": 280.0, "compile_s": 26.0},
        },  # fmt: skip
        "fast_math": {
            "resnet18": {"images_per_s": 120.0, "logits": [1.0, 2.003]},
            "demo_see": {"error": "X"},
        },
        "onednn": {"error": "exit 1: boom"},
    }
    text = X.table(results, ["resnet18", "demo_see"])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "100 img/s (diff 0e+00)" in rows["default"] and "280 ms, compile 26 s" in rows["default"]
    assert "120 img/s (diff 3e-03)" in rows["fast_math"] and "error: X" in rows["fast_math"]
    assert rows["onednn"].count("failed") == 2 and "- onednn: exit 1: boom" in text


def test_a_flag_set_that_stops_xla_is_reported_not_dropped():
    args = SimpleNamespace(what=["resnet18"], iters=1, steps=1)
    row = X._run_set("--xla_no_such_flag_exists=1", args)
    assert row["error"].startswith("exit ") and row["wall_s"] > 0
