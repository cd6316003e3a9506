"""Interpret a trained run: ``python -m fer_jax.interpret --workdir DIR [--clips 0 5 9] [--split test]``.

Writes to ``--out`` (default ``<workdir>/interpret/<split>``):

- ``expert_usage.png`` / ``expert_usage.json`` (models that report ``stats["expert_weights"]``, i.e.
  MCO-E Net's HCE-MoE): the mean routing weight of each expert over the split and per true class, and
  how often each expert is among the chosen top-k;
- ``gradcam_<index>.png`` for each ``--clips`` index (position in the split): the Grad-CAM strip of
  ``fer_jax.interpret.gradcam`` for that clip's frames (skipped with a note when the model or the
  installed code offers no Grad-CAM).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def expert_usage(outputs: dict, class_names: list[str]) -> dict | None:
    """Per-expert statistics from collected eval outputs (``stats/expert_weights`` ``(N, E)``)."""
    w = outputs.get("stats/expert_weights")
    if w is None:
        return None
    w = np.asarray(w, np.float64).reshape(len(w), -1)
    labels = np.asarray(outputs["label"])
    per_class = {
        name: w[labels == c].mean(axis=0).tolist()
        for c, name in enumerate(class_names)
        if (labels == c).any()
    }
    return {
        "num_examples": int(len(w)),
        "mean_weight": w.mean(axis=0).tolist(),
        "selected_fraction": (w > 0).mean(axis=0).tolist(),  # top-k routing leaves the others at 0
        "per_class_mean_weight": per_class,
    }


def usage_figure(usage: dict):
    import matplotlib.pyplot as plt

    from fer_jax.training import figures  # noqa: F401  (selects the Agg backend)

    mean = np.asarray(usage["mean_weight"])
    names = list(usage["per_class_mean_weight"])
    grid = np.asarray([usage["per_class_mean_weight"][n] for n in names])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100, gridspec_kw={"width_ratios": [1, 1.4]})
    experts = np.arange(len(mean))
    ax1.bar(experts, mean, color="tab:blue", label="mean weight")
    ax1.plot(experts, usage["selected_fraction"], "o", color="tab:orange", label="selected fraction")
    ax1.set_xlabel("expert")
    ax1.set_title("Expert usage")
    ax1.legend()
    im = ax2.imshow(grid, aspect="auto", cmap="viridis")
    ax2.set_yticks(range(len(names)), names)
    ax2.set_xticks(experts)
    ax2.set_xlabel("expert")
    ax2.set_title("Mean routing weight per true class")
    fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    return fig


def _gradcam_strips(config, defs, state, batches: dict[int, dict], out: Path) -> list[str]:
    """Grad-CAM strips for the chosen clips through ``fer_jax.interpret.gradcam`` (when present)."""
    try:
        from fer_jax.interpret import gradcam as gc
    except ImportError:
        return ["Grad-CAM skipped: fer_jax.interpret.gradcam is not available"]
    from flax import nnx

    from fer_jax.models import registry
    from fer_jax.training import state as state_lib

    model = nnx.merge(defs.eval, state_lib.eval_params(state), state["rest"])
    names = list(registry.input_spec(config))
    notes = []
    for index, example in batches.items():
        inputs = {k: np.asarray(example[k])[None] for k in names}
        try:
            cam = gc.gradcam(model, inputs)
            gc.save_gradcam_strip(out / f"gradcam_{index}.png", inputs, cam)
            notes.append(f"wrote gradcam_{index}.png")
        except Exception as e:  # a model without a Grad-CAM layer: say so, keep the rest
            notes.append(
                f"Grad-CAM for clip {index} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            )
    return notes


def interpret(workdir: str | Path, *, clips: list[int], split: str | None = None, checkpoint: str = "best",
              out_dir: str | Path | None = None) -> dict:  # fmt: skip
    """Library entry point; returns ``{"expert_usage": dict | None, "notes": [...], "out_dir": str}``."""
    from fer_jax.evaluate import restore_for_eval
    from fer_jax.models import registry
    from fer_jax.training import evaluation, steps
    from fer_jax.training import figures as fig_lib
    from fer_jax.training import state as state_lib
    from fer_jax.training.data import PipelineData

    config, defs, state, step, mesh = restore_for_eval(workdir, checkpoint)
    data = PipelineData()
    split = split or config.data.eval_split
    manifest = data.manifest(config)
    class_names = list(manifest.get("class_names") or range(config.model.num_classes))
    out = Path(out_dir) if out_dir else Path(workdir) / "interpret" / split
    out.mkdir(parents=True, exist_ok=True)
    names = list(registry.input_spec(config))
    eval_fn = steps.jit_eval_step(steps.make_eval_step(defs, names), mesh)
    import jax

    it = data.eval_iterator(config, split, batch_size=int(config.eval.batch_size), process_index=jax.process_index(),
                            process_count=jax.process_count(), seed=int(config.seed), augment=False)  # fmt: skip
    wanted, chosen = set(clips), {}
    chunks: dict[str, list] = {}
    for batch in it:
        outs = jax.tree.map(np.asarray, eval_fn(state_lib.eval_params(state), state["rest"],
                                                evaluation.device_batch(batch, names, mesh)))  # fmt: skip
        keep = outs["mask"].astype(bool)
        for k, v in outs.items():
            if k != "mask" and v.ndim and v.shape[0] == keep.shape[0]:
                chunks.setdefault(k, []).append(v[keep])
        for row, idx in enumerate(np.asarray(batch.get("index", [])).tolist()):
            if idx in wanted and keep[row]:
                chosen[idx] = {k: np.asarray(batch[k])[row] for k in names}
    outputs = {k: np.concatenate(v) for k, v in chunks.items()}
    notes = [f"checkpoint step {step}, split {split}, {len(outputs.get('label', []))} examples"]
    usage = expert_usage(outputs, class_names)
    if usage is None:
        notes.append("expert usage skipped: the model reports no stats['expert_weights']")
    else:
        (out / "expert_usage.json").write_text(json.dumps(usage, indent=2) + "\n")
        fig_lib.save(usage_figure(usage), out / "expert_usage.png")
        notes.append("wrote expert_usage.png / expert_usage.json")
    missing = sorted(wanted - set(chosen))
    if missing:
        notes.append(f"clips not in the split: {missing}")
    if chosen:
        notes += _gradcam_strips(config, defs, state, chosen, out)
    return {"expert_usage": usage, "notes": notes, "out_dir": str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_jax.interpret", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="training run directory")
    p.add_argument(
        "--clips", type=int, nargs="*", default=[0], help="clip positions in the split for Grad-CAM"
    )
    p.add_argument("--split", default=None, help="data split (default: the config's eval split)")
    p.add_argument("--checkpoint", default="best", help="best (default), latest or a step number")
    p.add_argument("--out", default=None, help="output folder (default WORKDIR/interpret/SPLIT)")
    a = p.parse_args(argv)
    if any(c < 0 for c in a.clips):
        p.exit(2, "error: --clips are non-negative positions\n")
    try:
        res = interpret(a.workdir, clips=a.clips, split=a.split, checkpoint=a.checkpoint, out_dir=a.out)
    except Exception as e:
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        print(f"error: {type(e).__name__}: {lines[0] if lines else ''}", file=sys.stderr)
        return 1
    for note in res["notes"]:
        print(note)
    print(f"output: {res['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
