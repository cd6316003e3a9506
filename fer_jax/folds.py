"""DFEW's 5-fold protocol in one command: train and evaluate every fold, then report mean ± std.

  python -m fer_jax.folds --config configs/dfew.py --data SHARDS --workdir RUNS [--folds 1 2 3 4 5]
      [--checkpoint best] [--config.model.backbone_weights=DIR --config.x=y ...]

``SHARDS`` is one ``data_prep.build --dataset dfew --fold all`` build (every clip processed once, the
folds as split lists in its manifest). Fold k trains in ``RUNS/fold<k>`` with ``--config.data.fold=k``
(``python -m fer_jax.train``, in its own process, so nothing else holds the accelerator), then
``python -m fer_jax.evaluate`` scores its ``--checkpoint``. A fold whose metrics exist is skipped, so the
same command, run again after an interruption, resumes the unfinished fold (the train command resumes from
its latest checkpoint) and goes on with the rest. Each command's output is kept in
``RUNS/fold<k>/logs/folds_{train,evaluate}.log``; ``RUNS/report.md`` and ``RUNS/summary.json``
(``fer_jax.report``'s fold aggregation) hold each fold's WAR, UAR, macro-F1 and per-class recall and
their mean ± std over the folds evaluated.

Exit status: 0 every fold evaluated; the failing command's status (one line naming the fold) otherwise;
2 bad arguments.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fer_jax.cli import EXIT_USAGE, Parser, input_error, interrupted
from fer_jax.paths import LocalStage, as_path

# runs ``python -m argv[0] argv[1:]`` writing its output to the log file; returns the exit status
CommandRunner = Callable[[list[str], Path], int]


def fold_workdir(workdir: str | Path, fold: int) -> Path:
    return as_path(workdir) / f"fold{int(fold)}"  # gs:// stays remote


def metrics_path(workdir: str | Path, fold: int, checkpoint: str = "best") -> Path:
    """Where ``fer_jax.evaluate`` writes fold ``fold``'s metrics (its default folder for the fold's split)."""
    from fer_jax.data.fold_splits import split_name

    return fold_workdir(workdir, fold) / "eval" / f"{split_name(fold, 'test')}-{checkpoint}" / "metrics.json"


def subprocess_runner(argv: list[str], log: Path) -> int:
    """``python -m`` in a child process; its output goes to the terminal and is appended to ``log`` (a
    remote ``log`` is appended to locally and copied when the command ends: GCS objects cannot be appended)."""
    stage = LocalStage(log.parent, "folds_log")  # log.parent itself when local
    stage.pull(log.name)
    stage.local.mkdir(parents=True, exist_ok=True)
    try:
        return _run_logged(argv, stage.local / log.name)
    finally:
        stage.close()


def _run_logged(argv: list[str], log: Path) -> int:
    with open(log, "a") as f:
        f.write(f"\n$ python -m {' '.join(argv)}  # {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        f.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            for chunk in iter(lambda: proc.stdout.read1(4096), b""):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                f.write(chunk.decode(errors="replace"))
            return proc.wait()
        except KeyboardInterrupt:  # the child got the same Ctrl-C: let it save its checkpoint and exit
            return proc.wait()


def check_data(data: str | Path, folds: Sequence[int]) -> None:
    """``ValueError`` (one line) unless ``data`` is a ``--fold all`` build holding every fold asked for."""
    from fer_jax.data.manifest import load_manifest

    m = load_manifest(data)
    held = m.get("folds")
    if not held:
        raise ValueError(
            f"{data} holds one fold (built with --fold {m.get('preprocessing', {}).get('fold')}); build every "
            "fold at once with data_prep.build --dataset dfew --fold all"
        )
    missing = [k for k in folds if str(k) not in held]
    if missing:
        raise ValueError(f"{data} holds folds {', '.join(sorted(held, key=int))}, not {missing}")


def run_folds(
    *,
    config: str,
    data: str | Path,
    workdir: str | Path,
    folds: Sequence[int] = (1, 2, 3, 4, 5),
    overrides: Sequence[str] = (),
    checkpoint: str = "best",
    runner: CommandRunner = subprocess_runner,
) -> tuple[int, dict | None]:
    """Trains and evaluates each fold not evaluated yet, then writes the report.

    Returns ``(exit status, summary)``: ``summary`` is ``fer_jax.report.build_fold_report``'s (None when a
    command failed: its status is returned and the later folds are not started).
    """
    from fer_jax.report import build_fold_report

    check_data(data, folds)
    for k in folds:
        wd = fold_workdir(workdir, k)
        if metrics_path(workdir, k, checkpoint).is_file():
            print(f"fold {k}: evaluated already ({metrics_path(workdir, k, checkpoint)}); skipped")
            continue
        print(f"fold {k}: training in {wd}", flush=True)
        train = ["fer_jax.train", "--config", str(config), "--workdir", str(wd), f"--config.data.dir={data}",
                 f"--config.data.fold={k}", *overrides]  # fmt: skip
        rc = runner(train, wd / "logs" / "folds_train.log")
        if rc != 0:
            print(f"error: fold {k}: training stopped with status {rc}; rerun the same command to resume",
                  file=sys.stderr)  # fmt: skip
            return rc, None
        evaluate = ["fer_jax.evaluate", "--workdir", str(wd), "--checkpoint", checkpoint]
        rc = runner(evaluate, wd / "logs" / "folds_evaluate.log")
        if rc != 0:
            print(f"error: fold {k}: evaluation failed with status {rc}", file=sys.stderr)
            return rc, None
    runs = {k: fold_workdir(workdir, k) for k in folds}
    summary = build_fold_report(runs, out=as_path(workdir) / "report.md", checkpoint=checkpoint)
    return 0, summary


def _usage(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m fer_jax.folds",
        description=__doc__.split("\n\n")[0],
        epilog="Any other --config.FIELD=VALUE is passed to every fold's training.",
    )
    parser.add_argument("--config", required=True, help="training config, e.g. configs/dfew.py")
    parser.add_argument("--data", required=True, help="shards of data_prep.build --dataset dfew --fold all")
    parser.add_argument("--workdir", required=True, help="runs folder: fold<k>/ per fold, report.md")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="folds (1 2 3 4 5)")
    parser.add_argument("--checkpoint", default="best", help="checkpoint each fold is scored on (best)")
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if not a.startswith("--config.")]
    if bad:
        return _usage(f"error: unexpected arguments {' '.join(bad)} (overrides are --config.X=Y)")
    if any(a.startswith(("--config.data.fold", "--config.data.dir")) for a in rest):
        return _usage("error: --config.data.fold / data.dir are set per fold; give --data and --folds")
    if any(not 1 <= k <= 9 for k in args.folds) or len(set(args.folds)) != len(args.folds):
        return _usage(f"error: --folds must be distinct fold numbers such as 1 2 3, got {args.folds}")
    if not Path(args.config).is_file():
        return _usage(f"error: --config {args.config}: no such file")
    try:
        rc, summary = run_folds(
            config=args.config, data=args.data, workdir=args.workdir, folds=args.folds, overrides=rest,
            checkpoint=args.checkpoint,
        )  # fmt: skip
    except KeyboardInterrupt:
        return interrupted("between folds; rerun the same command to resume")
    except (ValueError, OSError) as e:  # bad input: 2; the output not written: 1
        return input_error(e)
    if summary is not None:
        from fer_jax.report import format_fold_summary

        print(format_fold_summary(summary))
        out = as_path(args.workdir)
        print(f"wrote {out / 'report.md'} and {out / 'summary.json'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
