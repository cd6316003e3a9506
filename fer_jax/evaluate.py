"""Evaluate a trained run: ``python -m fer_jax.evaluate --workdir DIR [--checkpoint best|latest|STEP]
[--split test] [--passes N]``.

Library entry point (pinned; notebooks and the demo call it)::

    evaluate(workdir, *, checkpoint="best", split=None, passes=None, batch_size=None, out_dir=None,
             data=None, verbose=False) -> dict

It restores the model from ``<workdir>/checkpoints/{best,latest}`` (the EMA weights when the run kept
them), runs ``passes`` passes over the split (every example counted exactly once per pass: the last batch
is padded and masked, never dropped), and writes ``metrics.json`` (``war``, ``uar``, ``macro_f1``,
``per_class``, ``per_lighting`` where the data has lighting labels, ``confusion``, ``num_examples``,
``checkpoint_step``) and ``confusion.png`` to ``out_dir`` (default ``<workdir>/eval/<split>-<checkpoint>``).
With ``passes > 1`` the scalars are the mean over passes (the official MCO-E Net protocol), each pass
reading the split with another seed (the pipeline's random temporal sampling).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jax

from fer_jax.models import registry
from fer_jax.training import checkpoint as ckpt_lib
from fer_jax.training import evaluation, steps
from fer_jax.training import figures as fig_lib
from fer_jax.training import mesh as mesh_lib
from fer_jax.training import state as state_lib
from fer_jax.training.data import DataSource, PipelineData
from fer_jax.training.loop import build_model_and_state, load_config


def restore_for_eval(workdir: str | Path, checkpoint: str = "best", config=None):
    """Returns ``(config, defs, state, step, mesh)`` for the chosen checkpoint of a run.

    ``checkpoint``: ``best`` (falls back to ``latest`` when no evaluation ran yet), ``latest`` or a step.
    """
    mesh_lib.maybe_initialize_distributed()
    workdir = Path(workdir)
    config = config or load_config(workdir)
    mesh = mesh_lib.make_mesh()
    if not (workdir / "checkpoints").exists():
        raise FileNotFoundError(f"no checkpoints in {workdir}")
    ckpts = ckpt_lib.RunCheckpoints(workdir, read_only=True)
    try:
        which, step = _resolve(ckpts, str(checkpoint))
        # optimizer structure does not depend on the run length: any length rebuilds the restore target
        defs, target, _, _ = build_model_and_state(
            config, mesh, total_updates=1, updates_per_epoch=1, abstract=True
        )
        state, _, _ = ckpts.restore(which, step, target)
    finally:
        ckpts.close()
    return config, defs, state, step, mesh


def _resolve(ckpts: ckpt_lib.RunCheckpoints, checkpoint: str) -> tuple[str, int]:
    if checkpoint == "best":
        step = ckpts.latest_step("best")
        if step is not None:
            return "best", step
        checkpoint = "latest"
    if checkpoint == "latest":
        step = ckpts.latest_step("latest")
        if step is None:
            raise FileNotFoundError("the run has no checkpoint yet")
        return "latest", step
    try:
        step = int(checkpoint)
    except ValueError:
        raise ValueError(f"--checkpoint must be best, latest or a step number, got {checkpoint!r}") from None
    if step in ckpts.steps("latest"):
        return "latest", step
    if step in ckpts.steps("best"):
        return "best", step
    raise FileNotFoundError(
        f"no checkpoint at step {step}; kept: {sorted(set(ckpts.steps('latest') + ckpts.steps('best')))}"
    )


def evaluate(
    workdir: str | Path,
    *,
    checkpoint: str | int = "best",
    split: str | None = None,
    passes: int | None = None,
    batch_size: int | None = None,
    out_dir: str | Path | None = None,
    data: DataSource | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Evaluates a checkpoint of the run in ``workdir``; returns (and writes) the metrics dict."""
    workdir = Path(workdir)
    config, defs, state, step, mesh = restore_for_eval(workdir, str(checkpoint))
    data = data or PipelineData()
    split = split or config.data.eval_split
    passes = int(passes or config.eval.get("passes", 1))
    batch_size = int(batch_size or config.eval.batch_size)
    mesh_lib.check_batch_size(batch_size, mesh)
    manifest = data.manifest(config)
    class_names = list(manifest.get("class_names") or [str(i) for i in range(config.model.num_classes)])
    lighting_names = manifest.get("lighting_names")
    input_names = list(registry.input_spec(config))
    eval_step = steps.jit_eval_step(steps.make_eval_step(defs, input_names), mesh)
    pidx, pcount = jax.process_index(), jax.process_count()

    def make_iter(pass_index: int):
        return data.eval_iterator(
            config,
            split,
            batch_size=batch_size,
            process_index=pidx,
            process_count=pcount,
            seed=int(config.seed) + pass_index,
            augment=passes > 1,  # the stochastic passes: random temporal sampling per pass
        )

    metrics, _ = evaluation.evaluate_passes(
        make_iter,
        eval_step,
        state_lib.eval_params(state),
        state["rest"],
        passes=passes,
        input_names=input_names,
        mesh=mesh,
        num_classes=int(config.model.num_classes),
        class_names=class_names,
        lighting_names=lighting_names,
    )
    metrics = {"checkpoint_step": int(step), "split": split, **metrics}
    out = Path(out_dir) if out_dir else workdir / "eval" / f"{split}-{checkpoint}"
    if pidx == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        fig = fig_lib.confusion_figure(metrics["confusion"], class_names, f"{split}, step {step}")
        fig_lib.save(fig, out / "confusion.png")
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
    parser = argparse.ArgumentParser(prog="python -m fer_jax.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", required=True, nargs="+", help="training run directory (several: evaluated in turn)"
    )
    parser.add_argument("--checkpoint", default="best", help="best (default), latest or a step number")
    parser.add_argument("--split", default=None, help="data split (default: the config's eval split)")
    parser.add_argument(
        "--passes", type=int, default=None, help="stochastic passes to average (default: config)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="global eval batch size (default: config)"
    )
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/eval/SPLIT-CHECKPOINT)")
    parser.add_argument("--json", action="store_true", help="print metrics.json instead of tables")
    args = parser.parse_args(argv)
    if args.passes is not None and args.passes < 1:
        parser.exit(2, "error: --passes must be >= 1\n")
    if args.out and len(args.workdir) > 1:
        parser.exit(2, "error: --out takes one --workdir\n")
    # several runs in one process: the imports and the XLA client start once
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
        except Exception as e:  # one line for the user, no traceback
            msg = str(e).splitlines()[0] if str(e) else ""
            print(f"error: {workdir}: {type(e).__name__}: {msg}", file=sys.stderr)
            return 1
        if jax.process_index() == 0:
            if len(args.workdir) > 1:
                print(f"== {workdir}")
            print(json.dumps(m, indent=2) if args.json else format_tables(m))
            print(f"wrote {m.get('out_dir')}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
