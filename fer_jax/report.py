"""Collect evaluated runs into one Markdown report and a JSON summary (what ``make demo`` ends with).

``python -m fer_jax.report --out runs/demo/report.md --run mambafer=runs/demo/mambafer ...`` reads each
run's ``eval/<split>-<checkpoint>/metrics.json`` (written by ``python -m fer_jax.evaluate``), links the
figures found in the run (confusion matrix, training curves, Grad-CAM strips, expert usage), writes
``report.md`` and ``summary.json`` beside it and prints a summary table. Targets given with
``--target NAME.METRIC>=VALUE`` are measured and reported as met or missed, never adjusted.
``--compare-lighting A,B,CONDITION,MARGIN`` reports run A's minus run B's accuracy under one lighting
condition (the paper-2 finding that events help in low light).

``python -m fer_jax.report --out RUNS/report.md --folds RUNS`` aggregates the folds of a cross-validation
(``RUNS/fold<k>``, as ``python -m fer_jax.folds`` writes them): each fold's WAR, UAR, macro-F1 and
per-class recall, their mean and standard deviation over the folds, and links to each fold's metrics and
logs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_jax import seed_spread
from fer_jax.cli import (
    Parser,
    check_output_file,
    input_error,
    interrupted,
    read_json,
    write_atomic,
)
from fer_jax.host import cpu_description
from fer_jax.paths import files_under, path_of


@dataclass(frozen=True)
class Target:
    """A threshold a run's metric should reach, e.g. ``mambafer.uar>=0.80``."""

    run: str
    metric: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Target:
        m = re.fullmatch(r"\s*([\w-]+)\.([\w.]+)\s*>=\s*([0-9.]+)\s*", text)
        try:
            threshold = float(m.group(3)) if m else math.nan
        except ValueError:  # "0.8.1" matches the pattern but is no number
            threshold = math.nan
        if not m or not math.isfinite(threshold):
            raise ValueError(f"bad --target {text!r}: expected RUN.METRIC>=VALUE, VALUE a number")
        return cls(m.group(1), m.group(2), threshold)


def read_metrics(workdir: Path, split: str = "test", checkpoint: str = "best") -> dict[str, Any]:
    """The metrics ``evaluate`` wrote for ``split``/``checkpoint``; ``ValueError`` naming the file when it
    is damaged (not JSON, not an object, no numeric ``war`` / ``uar``)."""
    path = find_metrics(workdir, split, checkpoint)
    m = read_json(path, "metrics file")
    for key in ("war", "uar"):
        if not isinstance(m.get(key), int | float):
            raise ValueError(f"metrics file {path} has no number {key!r}: rerun fer_jax.evaluate")
    return m


def find_metrics(workdir: Path, split: str = "test", checkpoint: str = "best") -> Path:
    """The metrics.json that ``evaluate`` wrote for ``split``/``checkpoint`` in ``workdir``."""
    path = workdir / "eval" / f"{split}-{checkpoint}" / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `python -m fer_jax.evaluate --workdir {workdir}` first"
        )
    return path


def _lookup(metrics: dict, dotted: str) -> float | None:
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if node is None else float(node)


def machine_description() -> str:
    """One line naming the machine the numbers came from."""
    cpu = cpu_description()
    try:
        import jax

        backend = f"jax {jax.__version__} on {jax.default_backend()} ({jax.device_count()} device(s))"
    except Exception:  # the report must still be written without a working jax
        backend = "jax unavailable"
    return f"{cpu}, {os.cpu_count()} cores, {backend}, {platform.system()} {platform.release()}"


def _figures(workdir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """(caption, relative path) for every PNG a run produced, training figures first."""
    if not workdir.is_dir():
        return []
    found = sorted(p for p in files_under(workdir) if p.suffix == ".png" and "checkpoints" not in p.parts)
    order = {"curves": 0, "confusion": 1}

    def key(p: Path) -> tuple[int, str]:
        return (min((v for k, v in order.items() if k in p.stem), default=2), str(p))

    return [(p.relative_to(workdir).as_posix(), os.path.relpath(p, out_dir)) for p in sorted(found, key=key)]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def build_report(
    runs: dict[str, Path],
    *,
    out: Path,
    split: str = "test",
    checkpoint: str = "best",
    targets: list[Target] = (),
    lighting_comparisons: list[tuple[str, str, str, float]] = (),
    elapsed_s: float | None = None,
    max_minutes: float | None = None,
    title: str = "fer_jax demo report",
    spread: str | Path | None = None,
) -> dict[str, Any]:
    """Writes ``out`` (Markdown) and ``summary.json`` beside it; returns the summary. ``spread``: a
    ``benchmarks/demo_seeds.py`` JSON; this run's numbers are placed within it (``fer_jax.seed_spread``)."""
    out_dir = out.parent
    check_output_file(out)  # before anything is read or written
    metrics = {name: read_metrics(wd, split, checkpoint) for name, wd in runs.items()}
    summary: dict[str, Any] = {
        "machine": machine_description(),
        "split": split,
        "checkpoint": checkpoint,
        "elapsed_s": None if elapsed_s is None else round(elapsed_s, 1),
        "models": {},
        "targets": [],
        "lighting_comparisons": [],
        "time_limit": None,
    }
    if max_minutes is not None and elapsed_s is not None:
        minutes = elapsed_s / 60
        summary["time_limit"] = {
            "target": f"whole run <= {max_minutes:g} min",
            "minutes": round(minutes, 2),
            "met": minutes <= max_minutes,
        }
    for name, m in metrics.items():
        entry = {
            "workdir": str(runs[name]),
            "war": m["war"],
            "uar": m["uar"],
            "macro_f1": m.get("macro_f1"),
            "num_examples": m.get("num_examples"),
            "checkpoint_step": m.get("checkpoint_step"),
            "per_class": m.get("per_class", {}),
        }
        if m.get("per_lighting"):
            entry["per_lighting"] = m["per_lighting"]
        summary["models"][name] = entry
    spread_data = None if spread is None else seed_spread.load_spread(spread)
    for t in targets:  # a target naming a run or metric that does not exist is a typo, not a miss
        if t.run not in metrics:
            raise ValueError(f"--target {t.run}.{t.metric}: no run {t.run!r}; runs: {', '.join(metrics)}")
        if _lookup(metrics[t.run], t.metric) is None:
            scalars = sorted(k for k, v in metrics[t.run].items() if isinstance(v, int | float))
            raise ValueError(
                f"--target {t.run}.{t.metric}: no metric {t.metric!r}; e.g. {', '.join(scalars)}"
            )
    for a, b, _cond, _ in lighting_comparisons:
        for name in (a, b):
            if name not in metrics:
                raise ValueError(
                    f"lighting comparison {a} - {b}: no run {name!r}; runs: {', '.join(metrics)}"
                )
    for t in targets:
        value = _lookup(metrics.get(t.run, {}), t.metric)
        summary["targets"].append(
            {
                "target": f"{t.run}.{t.metric} >= {t.threshold}",
                "value": value,
                "met": value is not None and value >= t.threshold,
            }
        )
    for a, b, cond, margin in lighting_comparisons:
        va = _lookup(metrics.get(a, {}), f"per_lighting.{cond}")
        vb = _lookup(metrics.get(b, {}), f"per_lighting.{cond}")
        gap = None if va is None or vb is None else va - vb
        summary["lighting_comparisons"].append(
            {
                "condition": cond,
                a: va,
                b: vb,
                "difference": gap,
                "target": f"{a} - {b} >= {margin}",
                "met": gap is not None and gap >= margin,
            }
        )

    lines = [f"# {title}", "", f"Machine: {summary['machine']}."]
    if elapsed_s is not None:
        lines.append(f"Wall time of the whole run: {elapsed_s / 60:.1f} min.")
    lines += [
        f"Split `{split}`, checkpoint `{checkpoint}`. Every number below is read from the runs' `metrics.json`.",
        "",
        "## Summary",
        "",
        "| model | WAR % | UAR % | macro-F1 % | examples |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, e in summary["models"].items():
        lines.append(
            f"| {name} | {_pct(e['war'])} | {_pct(e['uar'])} | {_pct(e['macro_f1'])} | {e['num_examples']} |"
        )
    tl = summary["time_limit"]
    if summary["targets"] or summary["lighting_comparisons"] or tl:
        lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|---|"]
        if tl:
            lines.append(f"| {tl['target']} | {tl['minutes']:.1f} min | {'yes' if tl['met'] else '**no**'} |")
        for t in summary["targets"]:
            lines.append(f"| {t['target']} | {_pct(t['value'])} % | {'yes' if t['met'] else '**no**'} |")
        for c in summary["lighting_comparisons"]:
            lines.append(
                f"| {c['target']} ({c['condition']} light) | {_pct(c['difference'])} points | "
                f"{'yes' if c['met'] else '**no**'} |"
            )
    lit = {n: e["per_lighting"] for n, e in summary["models"].items() if "per_lighting" in e}
    if lit:
        conds = list(next(iter(lit.values())))
        lines += ["", "## Accuracy per lighting condition (%)", ""]
        lines += ["| model | " + " | ".join(conds) + " |", "|---|" + "---:|" * len(conds)]
        for n, pl in lit.items():
            lines.append(f"| {n} | " + " | ".join(_pct(pl.get(c)) for c in conds) + " |")
    if spread_data is not None:
        summary["spread"] = seed_spread.compare(summary["models"], spread_data)
        lines += seed_spread.markdown(summary["spread"], str(spread))
    for name, e in summary["models"].items():
        lines += ["", f"## {name}", "", f"Run folder: `{e['workdir']}`.", ""]
        lines += ["| class | recall % |", "|---|---:|"]
        lines += [f"| {c} | {_pct(r)} |" for c, r in e["per_class"].items()]
        for caption, rel in _figures(path_of(e["workdir"]), out_dir):
            lines += ["", f"![{name}: {caption}]({rel})"]
    out_dir.mkdir(parents=True, exist_ok=True)  # each file whole or not at all (an earlier report stays)
    write_atomic(out, "\n".join(lines) + "\n")
    write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1, the spread between folds; None for one value)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _fold_metrics(workdir: Path, checkpoint: str) -> dict[str, Any]:
    """A fold run's metrics of the split it evaluated on (its config.json's ``data.eval_split``)."""
    return read_metrics(workdir, _fold_split(workdir), checkpoint)


def build_fold_report(
    folds: dict[int, Path], *, out: Path, checkpoint: str = "best", title: str = "fer_jax cross-validation"
) -> dict[str, Any]:
    """Writes ``out`` (Markdown) and ``summary.json`` beside it for the runs of ``folds`` ({fold: workdir})
    and returns the summary: per fold ``war``, ``uar``, ``macro_f1``, ``per_class``; ``mean`` / ``std`` of
    each over the folds (per class over the folds whose test split holds the class)."""
    check_output_file(out)
    if not folds:
        raise ValueError("no folds to report")
    metrics = {k: _fold_metrics(path_of(wd), checkpoint) for k, wd in sorted(folds.items())}
    classes = list(dict.fromkeys(c for m in metrics.values() for c in m.get("per_class", {})))
    per_fold = {
        str(k): {"workdir": str(folds[k]), "war": m["war"], "uar": m["uar"], "macro_f1": m.get("macro_f1"),
                 "num_examples": m.get("num_examples"), "checkpoint_step": m.get("checkpoint_step"),
                 "per_class": m.get("per_class", {})}
        for k, m in metrics.items()
    }  # fmt: skip
    mean: dict[str, Any] = {"per_class": {}}
    std: dict[str, Any] = {"per_class": {}}
    for key in ("war", "uar", "macro_f1"):
        mean[key], std[key] = _mean_std([e[key] for e in per_fold.values() if e[key] is not None])
    for c in classes:
        vals = [e["per_class"][c] for e in per_fold.values() if e["per_class"].get(c) is not None]
        mean["per_class"][c], std["per_class"][c] = _mean_std(vals)
    summary = {"machine": machine_description(), "checkpoint": checkpoint, "folds": per_fold, "mean": mean,
               "std": std, "num_folds": len(per_fold), "std_kind": "sample (ddof 1)"}  # fmt: skip

    def pm(m, s):
        return "-" if m is None else _pct(m) + ("" if s is None else f" ± {_pct(s)}")

    out_dir = out.parent
    lines = [f"# {title}", "", f"Machine: {summary['machine']}.", "",
             f"{len(per_fold)} fold(s), checkpoint `{checkpoint}`; mean ± sample standard deviation over the "
             "folds. Every number is read from the folds' `metrics.json`.", "",
             "| fold | WAR % | UAR % | macro-F1 % | test clips | metrics | logs |", "|---|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for k, e in per_fold.items():
        wd = path_of(e["workdir"])
        rel = os.path.relpath(find_metrics(wd, _fold_split(wd), checkpoint), out_dir)
        logs = os.path.relpath(wd / "logs", out_dir)
        lines.append(f"| {k} | {_pct(e['war'])} | {_pct(e['uar'])} | {_pct(e['macro_f1'])} | "
                     f"{e['num_examples']} | [metrics.json]({rel}) | [{logs}]({logs}) |")  # fmt: skip
    lines.append(
        f"| **mean** | {pm(mean['war'], std['war'])} | {pm(mean['uar'], std['uar'])} | "
        f"{pm(mean['macro_f1'], std['macro_f1'])} | | | |"
    )
    lines += ["", "## Recall per class (%)", "", "| class | " + " | ".join(f"fold {k}" for k in per_fold)
              + " | mean ± std |", "|---|" + "---:|" * (len(per_fold) + 1)]  # fmt: skip
    for c in classes:
        cells = " | ".join(_pct(e["per_class"].get(c)) for e in per_fold.values())
        lines.append(f"| {c} | {cells} | {pm(mean['per_class'][c], std['per_class'][c])} |")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "\n".join(lines) + "\n")
    write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _fold_split(workdir: Path) -> str:
    path = workdir / "config.json"
    config = read_json(path, "the run's config") if path.is_file() else {}
    return (config.get("data") or {}).get("eval_split", "test")


def fold_runs(folder: Path) -> dict[int, Path]:
    """``{k: folder/fold<k>}`` for every ``fold<k>`` run folder in ``folder``."""
    found = {int(p.name[4:]): p for p in folder.glob("fold*") if p.is_dir() and p.name[4:].isdigit()}
    if not found:
        raise ValueError(
            f"--folds {folder}: no fold<k> run folders in it (python -m fer_jax.folds writes them)"
        )
    return dict(sorted(found.items()))


def format_fold_summary(summary: dict[str, Any]) -> str:
    """The per-fold table and the mean ± std line (``fer_jax.folds`` prints it at the end)."""
    rows = [f"{'fold':<8}{'WAR %':>8}{'UAR %':>8}{'F1 %':>8}"]
    for k, e in summary["folds"].items():
        rows.append(f"{k:<8}{_pct(e['war']):>8}{_pct(e['uar']):>8}{_pct(e['macro_f1']):>8}")
    mean, std = summary["mean"], summary["std"]
    rows.append(
        "mean ± std over {} fold(s): WAR {} ± {}, UAR {} ± {}, macro-F1 {} ± {}".format(
            summary["num_folds"], _pct(mean["war"]), _pct(std["war"]), _pct(mean["uar"]), _pct(std["uar"]),
            _pct(mean["macro_f1"]), _pct(std["macro_f1"]),
        )
    )  # fmt: skip
    return "\n".join(rows)


def format_summary(summary: dict[str, Any]) -> str:
    """The table printed at the end of ``make demo``."""
    rows = [f"{'model':<16}{'WAR %':>8}{'UAR %':>8}  low-light %"]
    for name, e in summary["models"].items():
        low = e.get("per_lighting", {}).get("low")
        rows.append(f"{name:<16}{_pct(e['war']):>8}{_pct(e['uar']):>8}  {_pct(low):>10}")
    for t in summary["targets"]:
        rows.append(f"target {t['target']}: measured {_pct(t['value'])} -> {'met' if t['met'] else 'MISSED'}")
    for c in summary["lighting_comparisons"]:
        rows.append(
            f"target {c['target']} under {c['condition']} light: measured {_pct(c['difference'])} points -> "
            f"{'met' if c['met'] else 'MISSED'}"
        )
    rows += seed_spread.summary_lines(summary.get("spread", []))
    tl = summary.get("time_limit")
    if tl:
        rows.append(
            f"target {tl['target']}: measured {tl['minutes']:.1f} min -> {'met' if tl['met'] else 'MISSED'}"
        )
    if summary.get("elapsed_s") is not None:
        rows.append(f"total wall time {round(summary['elapsed_s'] / 60, 2):.1f} min on {summary['machine']}")
    return "\n".join(rows)


def _parse_run(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"bad --run {text!r}: expected NAME=WORKDIR")
    return name, path_of(path)


def _parse_runs(texts: list[str]) -> dict[str, Path]:
    """``--run`` values as ``{name: workdir}``; a name given twice is refused (the later one would
    silently replace the earlier run in the report)."""
    runs: dict[str, Path] = {}
    for text in texts:
        name, path = _parse_run(text)
        if name in runs:
            raise ValueError(f"--run {name} given twice ({runs[name]} and {path}); names must differ")
        runs[name] = path
    return runs


def _parse_comparison(text: str) -> tuple[str, str, str, float]:
    parts = text.split(",")
    bad = f"bad --compare-lighting {text!r}: expected RUN_A,RUN_B,CONDITION,MARGIN (MARGIN a number)"
    if len(parts) != 4:
        raise ValueError(bad)
    try:
        margin = float(parts[3])
    except ValueError:
        raise ValueError(bad) from None
    if not math.isfinite(margin):
        raise ValueError(bad)
    return parts[0], parts[1], parts[2], margin


def _check_time_flags(started: float | None, max_minutes: float | None, now: float) -> None:
    """``--max-minutes`` needs ``--started`` (alone it was silently ignored); both finite, the limit
    positive, the start not in the future."""
    if max_minutes is not None:
        if started is None:
            raise ValueError("--max-minutes needs --started (the UNIX time the whole run started)")
        if not (math.isfinite(max_minutes) and max_minutes > 0):
            raise ValueError(f"--max-minutes must be a positive number, got {max_minutes}")
    if started is not None and not (math.isfinite(started) and 0 < started <= now + 60):
        raise ValueError(f"--started {started} is not a UNIX time in the past (e.g. $(date +%s))")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m fer_jax.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="report path, e.g. runs/demo/report.md")
    parser.add_argument("--run", action="append", default=[], help="NAME=WORKDIR (repeat)")
    parser.add_argument(
        "--folds", default=None, help="RUNS: aggregate RUNS/fold<k> (python -m fer_jax.folds) into mean ± std"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument(
        "--target", action="append", default=[], help="RUN.METRIC>=VALUE, e.g. mambafer.uar>=0.8"
    )
    parser.add_argument(
        "--compare-lighting",
        action="append",
        default=[],
        help="RUN_A,RUN_B,CONDITION,MARGIN (accuracy points / 100)",
    )
    parser.add_argument(
        "--started", type=float, default=None, help="UNIX time the whole run started (for wall time)"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="time target for the whole run (needs --started)"
    )
    parser.add_argument("--title", default="fer_jax demo report")
    parser.add_argument(
        "--spread",
        default=None,
        help="benchmarks/demo_seeds.py JSON: place this run within the seeds' spread",
    )
    args = parser.parse_args(argv)
    now = time.time()
    if args.folds is not None:
        try:
            if args.run:
                raise ValueError("--folds and --run are separate reports; give one of them")
            summary = build_fold_report(
                fold_runs(path_of(args.folds)), out=path_of(args.out), checkpoint=args.checkpoint
            )
        except (ValueError, OSError) as e:  # bad input: 2; the output not written: 1
            return input_error(e)
        print(format_fold_summary(summary))
        print(f"wrote {args.out} and {path_of(args.out).parent / 'summary.json'}")
        return 0
    try:
        if not args.run:
            raise ValueError("give at least one --run NAME=WORKDIR")
        runs = _parse_runs(args.run)
        _check_time_flags(args.started, args.max_minutes, now)
        summary = build_report(
            runs,
            out=path_of(args.out),
            split=args.split,
            checkpoint=args.checkpoint,
            targets=[Target.parse(t) for t in args.target],
            lighting_comparisons=[_parse_comparison(c) for c in args.compare_lighting],
            elapsed_s=None if args.started is None else now - args.started,
            max_minutes=args.max_minutes,
            title=args.title,
            spread=args.spread,
        )
    except KeyboardInterrupt:
        return interrupted("while writing the report")
    except (ValueError, OSError) as e:  # bad input: 2; the output not written: 1
        return input_error(e)
    print(format_summary(summary))
    print(f"wrote {args.out} and {path_of(args.out).parent / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
