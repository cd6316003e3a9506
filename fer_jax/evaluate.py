"""Evaluate a trained run: ``python -m fer_jax.evaluate --workdir DIR [--checkpoint best|latest|STEP]
[--split test] [--passes N]``.

Library entry point (pinned; notebooks and the demo call it)::

    evaluate(workdir, *, checkpoint="best", split=None, passes=None, batch_size=None, out_dir=None,
             data=None, verbose=False) -> dict

A thin CLI over ``fer_jax.training.run.Run``: it restores the model from
``<workdir>/checkpoints/{best,latest}`` (the EMA weights when the run kept them), runs ``passes`` passes
over the split (every example counted exactly once per pass: the last batch is padded and masked, never
dropped), and writes to ``out_dir`` (default ``<workdir>/eval/<split>-<checkpoint>``):
``metrics.json`` (``war``, ``uar``, ``macro_f1``, ``per_class``, ``per_lighting`` where the data has
lighting labels, ``confusion``, ``num_examples``, ``checkpoint_step``), ``predictions.jsonl`` (one line
a clip: ``id``, ``label``, ``pred``, ``probs`` {class: p} (the mean over passes), ``lighting`` where
present) and ``confusion.png``.
Each file is written whole or not at all, ``metrics.json`` last. ``latest`` (and ``best`` before any
evaluation) skips an unreadable newest step with a ``note:`` on stderr naming it, as a resume does.
With ``passes > 1`` the scalars are the mean over passes (the official MCO-E Net protocol), each pass
reading the split with another seed (the pipeline's random temporal sampling).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jax

from fer_jax import cpu_threads
from fer_jax.cli import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Parser,
    check_output_dir,
    checkpoint_arg,
    interrupted,
    one_line,
    write_atomic,
)
from fer_jax.paths import as_path
from fer_jax.training import evaluation
from fer_jax.training import figures as fig_lib
from fer_jax.training.data import DataSource
from fer_jax.training.run import Run, load_config


def evaluate(
    workdir: str | Path,
    *,
    checkpoint: str | int | None = None,
    split: str | None = None,
    passes: int | None = None,
    batch_size: int | None = None,
    out_dir: str | Path | None = None,
    data: DataSource | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Evaluates a checkpoint of the run in ``workdir``; returns (and writes) the metrics dict.

    ``checkpoint`` None: the config's ``eval.checkpoint`` (configs/see_reference.py: ``latest``, the
    official protocol scores the last epoch), else ``best``."""
    for name, value in (("batch_size", batch_size), ("passes", passes)):
        if value is not None and int(value) < 1:  # 0 must not silently mean "the config's value"
            raise ValueError(f"{name} must be >= 1, got {value}")
    workdir = as_path(workdir)  # gs:// stays remote
    if out_dir is not None:  # refused before the evaluation, not after it (its compute would be lost)
        check_output_dir(out_dir)
    if checkpoint is None:
        checkpoint = load_config(workdir).get("eval", {}).get("checkpoint", "best")
    run = Run.restore(workdir, str(checkpoint), data=data)
    if jax.process_index() == 0:
        for note in run.notes:  # an unreadable newest checkpoint was skipped: say which step is used
            print(f"note: {note}", file=sys.stderr)
    config = run.config
    split = split or config.data.eval_split
    passes = int(passes or config.eval.get("passes", 1))
    out = as_path(out_dir) if out_dir else workdir / "eval" / f"{split}-{checkpoint}"
    check_output_dir(out)
    metrics, outputs = run.evaluate(split, passes, batch_size=batch_size)
    metrics = {"checkpoint_step": run.step, "split": split, **metrics}
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        # each file whole or not at all, metrics.json last: an interrupted write never leaves new metrics
        # beside old predictions
        rows = evaluation.prediction_rows(outputs, run.class_names, run.info.lighting_names)
        write_atomic(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        fig = fig_lib.confusion_figure(metrics["confusion"], run.class_names, f"{split}, step {run.step}")
        fig_lib.save(fig, out / "confusion.png")
        write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        metrics["out_dir"] = str(out)
        if verbose:
            print(format_tables(metrics))
    return metrics


def format_tables(m: dict) -> str:
    """Human-readable summary: headline numbers, per-class recall, per-lighting accuracy."""
    lines = [
        f"checkpoint step {m['checkpoint_step']}, split {m['split']}, {m['num_examples']} examples"
        + (f", {m['passes']} passes" if m.get("passes") else ""),
        f"WAR {100 * m['war']:6.2f}   UAR {100 * m['uar']:6.2f}   macro-F1 {100 * m['macro_f1']:6.2f}",
        "",
        f"{'class':<14}{'recall %':>10}",
    ]
    for name, r in m["per_class"].items():
        lines.append(f"{name:<14}{'-' if r is None else f'{100 * r:.2f}':>10}")
    if m.get("per_lighting"):
        lines += ["", f"{'lighting':<14}{'accuracy %':>10}"]
        lines += [f"{name:<14}{100 * a:>10.2f}" for name, a in m["per_lighting"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m fer_jax.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", required=True, nargs="+", help="training run directory (several: evaluated in turn)"
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        type=checkpoint_arg,
        help="best, latest or a step number (default: the config's eval.checkpoint, else best)",
    )
    parser.add_argument("--split", default=None, help="data split (default: the config's eval split)")
    parser.add_argument(
        "--passes", type=int, default=None, help="stochastic passes to average (default: config)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="global eval batch size (default: config)"
    )
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/eval/SPLIT-CHECKPOINT)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print metrics.json (several runs: {workdir: metrics}) instead of tables; stdout is JSON only",
    )
    args = parser.parse_args(argv)
    if args.passes is not None and args.passes < 1:
        parser.exit(EXIT_USAGE, "error: --passes must be >= 1\n")
    if args.batch_size is not None and args.batch_size < 1:
        parser.exit(EXIT_USAGE, "error: --batch-size must be >= 1\n")
    if args.out and len(args.workdir) > 1:
        parser.exit(EXIT_USAGE, "error: --out takes one --workdir\n")
    if args.out:
        try:  # refused before any run is restored and evaluated
            check_output_dir(args.out)
        except ValueError as e:
            parser.exit(EXIT_USAGE, f"error: {e}\n")
    try:  # before anything creates the JAX backend
        cpu_threads.apply_from_env()
    except ValueError as e:
        parser.exit(EXIT_USAGE, f"error: {e}\n")
    # several runs in one process: the imports and the XLA client start once
    results: dict[str, dict] = {}
    for workdir in args.workdir:
        try:
            m = evaluate(
                workdir,
                checkpoint=args.checkpoint,
                split=args.split,
                passes=args.passes,
                batch_size=args.batch_size,
                out_dir=args.out,
            )
        except KeyboardInterrupt:  # the files of an earlier evaluation stay whole (atomic writes)
            return interrupted(f"while evaluating {workdir}")
        except Exception as e:  # one line for the user, no traceback
            print(f"error: {workdir}: {one_line(e, with_type=True)}", file=sys.stderr)
            return EXIT_FAILURE
        if jax.process_index() == 0 and not args.json:
            if len(args.workdir) > 1:
                print(f"== {workdir}")
            print(format_tables(m))
            print(f"wrote {m.get('out_dir')}/metrics.json")
        results[str(workdir)] = m
    if (
        args.json and jax.process_index() == 0
    ):  # stdout is one JSON document: a run's metrics, or {workdir: metrics}
        print(json.dumps(next(iter(results.values())) if len(results) == 1 else results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
