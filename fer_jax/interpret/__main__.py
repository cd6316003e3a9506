"""Interpret a trained run: ``python -m fer_jax.interpret --workdir DIR [--clips 0 5 9] [--split test]``.

A thin CLI over ``fer_jax.interpret.report.interpret``. Writes to ``--out`` (default
``<workdir>/interpret/<split>``):

- ``expert_usage.png`` / ``expert_usage.json`` (models that report ``stats["expert_weights"]``, i.e.
  MCO-E Net's HCE-MoE): the mean routing weight of each expert over the split and per true class, and
  how often each expert is among the chosen top-k;
- ``gradcam_<index>.png`` for each ``--clips`` index (position in the split): the Grad-CAM strip
  (paper 1, Figs. 3-4) of the predicted class for that clip's frames (models with ``features`` /
  ``classify_from`` hooks, i.e. MambaFER; ``--layer refined|cbam|backbone``, paper 1 Fig. 2's three maps);
- ``au_<index>.png`` (AU curves of that clip), ``au_by_class.png`` (mean AU peak per true class over the
  split) and ``au.json`` (per-clip ``clip_summary`` and the per-class table): models fed landmarks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fer_jax import cpu_threads
from fer_jax.cli import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Parser,
    check_output_dir,
    checkpoint_arg,
    interrupted,
    one_line,
    read_json,
)
from fer_jax.interpret.report import expert_usage, interpret  # noqa: F401  (expert_usage: library use)
from fer_jax.paths import as_path


def check_clips(workdir: str | Path, clips: list[int], split: str | None) -> None:
    """Refuses (``ValueError``, one line) a split the run's data does not have and ``--clips`` positions
    past its end, before the run is restored and the split evaluated: a position out of range used to be
    a note after the work, with exit 0. Runs without a ``manifest.json`` copy are checked later."""
    workdir = as_path(workdir)  # gs:// stays remote
    if not (workdir / "manifest.json").is_file() or not (workdir / "config.json").is_file():
        return  # the restore names what is missing
    config = read_json(workdir / "config.json", "the run's config")
    split = split or config.get("data", {}).get("eval_split", "test")
    sizes = read_json(workdir / "manifest.json", "the run's manifest").get("num_examples") or {}
    if split not in sizes:
        return  # an older manifest without counts: the data names the splits it has
    n = int(sizes[split])
    bad = sorted({c for c in clips if c >= n})
    if bad:
        raise ValueError(f"--clips {' '.join(map(str, bad))}: split {split!r} has {n} clips (positions "
                         f"0-{n - 1})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m fer_jax.interpret", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, nargs="+", help="training run directory (several: in turn)")
    p.add_argument(
        "--clips", type=int, nargs="*", default=[0], help="clip positions in the split for Grad-CAM"
    )
    p.add_argument("--split", default=None, help="data split (default: the config's eval split)")
    p.add_argument(
        "--checkpoint", default="best", type=checkpoint_arg, help="best (default), latest or a step number"
    )
    p.add_argument("--out", default=None, help="output folder (default WORKDIR/interpret/SPLIT)")
    p.add_argument(
        "--layer",
        default="refined",
        choices=("refined", "cbam", "backbone"),
        help="Grad-CAM feature map (MambaFER): refined (after the facial enhancer, the pooled map; default), "
        "cbam (after the attention stages) or backbone",
    )
    a = p.parse_args(argv)
    if any(c < 0 for c in a.clips):
        p.exit(EXIT_USAGE, "error: --clips are non-negative positions\n")
    if a.out and len(a.workdir) > 1:
        p.exit(EXIT_USAGE, "error: --out takes one --workdir\n")
    try:  # bad requests are refused before any run is restored and evaluated
        cpu_threads.apply_from_env()  # before anything creates the JAX backend
        if a.out:
            check_output_dir(a.out)
        for workdir in a.workdir:
            check_clips(workdir, a.clips, a.split)
    except (ValueError, FileNotFoundError) as e:
        p.exit(EXIT_USAGE, f"error: {one_line(e)}\n")
    for workdir in a.workdir:
        try:
            res = interpret(
                workdir, clips=a.clips, split=a.split, checkpoint=a.checkpoint, out_dir=a.out, layer=a.layer
            )
        except KeyboardInterrupt:
            return interrupted(f"while interpreting {workdir}")
        except Exception as e:  # one line for the user, no traceback
            print(f"error: {workdir}: {one_line(e, with_type=True)}", file=sys.stderr)
            return EXIT_FAILURE
        for note in res["notes"]:
            print(note)
        print(f"output: {res['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
