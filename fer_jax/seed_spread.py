"""Places one run's numbers within a documented spread over seeds (what ``fer_jax.report --spread`` shows).

The spread file is the JSON that ``benchmarks/demo_seeds.py`` writes beside its table
(``docs/bench/demo_seeds.json``): ``runs.<name>.<metric>`` = ``{n, mean, std, min, max}`` for the metrics
``war``, ``uar`` and ``low`` (accuracy under low light). A reader of the demo's report sees, per model and
metric, this run's value beside the seeds' mean +- std and range, and whether it falls inside that range.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS = {"war": "WAR", "uar": "UAR", "low": "low light"}


def load_spread(path: str | Path) -> dict[str, Any]:
    """The spread file's content; ValueError (one line) when it is not a demo_seeds JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--spread {path}: cannot read it ({e.__class__.__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise ValueError(f"--spread {path}: not a benchmarks/demo_seeds.py result (no 'runs')")
    return data


def _value(entry: dict, metric: str) -> float | None:
    if metric == "low":
        return (entry.get("per_lighting") or {}).get("low")
    return entry.get(metric)


def compare(models: dict[str, dict], spread: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, metric) that both this run and the spread have: the value, the spread's
    n / mean / std / min / max, and ``position``: "within" the seeds' range, "below" or "above" it."""
    rows = []
    for name, entry in models.items():
        for metric in METRICS:
            value, s = _value(entry, metric), spread["runs"].get(name, {}).get(metric)
            if value is None or not s:
                continue
            position = "below" if value < s["min"] else ("above" if value > s["max"] else "within")
            rows.append({"model": name, "metric": metric, "value": value, **s, "position": position})
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(rows: list[dict[str, Any]], source: str) -> list[str]:
    """The report's section: this run against the seeds."""
    if not rows:
        return []
    n = max(r["n"] for r in rows)
    lines = [
        "",
        "## This run against the documented seed spread",
        "",
        f"From `{source}` ({n} trainings a model over seeds and XLA optimisation levels). Accuracies in %.",
        "",
        "| model | metric | this run | seeds: mean +- std | seeds: min - max | this run is |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        where = "within the range" if r["position"] == "within" else f"**{r['position']} the range**"
        lines.append(
            f"| {r['model']} | {METRICS[r['metric']]} | {_pct(r['value'])} | {_pct(r['mean'])} +- "
            f"{_pct(r['std'])} | {_pct(r['min'])} - {_pct(r['max'])} | {where} |"
        )
    return lines


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The terminal's lines: one per model, its UAR against the seeds."""
    out = []
    for r in rows:
        if r["metric"] != "uar":
            continue
        out.append(
            f"{r['model']}: UAR {_pct(r['value'])} against {_pct(r['mean'])} +- {_pct(r['std'])} over "
            f"{r['n']} seeded runs (range {_pct(r['min'])}-{_pct(r['max'])}): {r['position']} the range"
        )
    return out
