"""Interpretation of a trained run: expert usage (MCO-E Net's HCE-MoE), Grad-CAM strips and action-unit
(AU) curves of chosen clips, and the mean AU peak per class (MambaFER). ``interpret(workdir, clips=...)``
restores the run (``fer_jax.training.run.Run``) and writes to ``out_dir`` (default
``<workdir>/interpret/<split>``):

- ``expert_usage.png`` / ``expert_usage.json`` (models that report ``stats["expert_weights"]``, i.e.
  MCO-E Net's HCE-MoE): the mean routing weight of each expert over the split and per true class, and
  how often each expert is among the chosen top-k;
- ``gradcam_<index>.png`` for each clip index (position in the split): the Grad-CAM strip (paper 1,
  Figs. 3-4) of the predicted class for that clip's frames (models with ``features`` / ``classify_from``
  hooks, i.e. MambaFER; ``layer="refined"|"cbam"|"backbone"``: paper 1's Fig. 2 shows all three);
- ``au_<index>.png`` (AU curves of that clip), ``au_by_class.png`` (mean AU peak per true class over the
  split) and ``au.json`` (per-clip ``clip_summary`` and the per-class table): models fed landmarks, on
  data built with per-frame landmarks; for template-landmark data one note says AU analysis is
  unavailable and why (``au.au_unavailable``) instead of drawing zeros.

The CLI is ``python -m fer_jax.interpret`` (``fer_jax/interpret/__main__.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_jax.paths import as_path


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


def clip_figures(model, examples: dict[int, dict], preds: dict[int, int], class_names: list[str],
                  out: Path, layer: str, *, with_au: bool = True) -> tuple[list[str], dict]:  # fmt: skip
    """Grad-CAM strips (of the predicted class) and, with ``with_au``, AU curves for the chosen clips of a
    frame model.

    Returns notes and ``{index: {"label", "pred"[, "au": clip_summary]}}``.
    """
    from fer_jax.data.normalize import imagenet_to_uint8
    from fer_jax.interpret import au
    from fer_jax.interpret import figures as interp_fig
    from fer_jax.interpret import gradcam as gc

    notes, per_clip = [], {}
    for index, ex in sorted(examples.items()):
        label, pred = int(ex["label"]), int(preds[index])
        title = f"clip {index}: true {class_names[label]}, predicted {class_names[pred]}"
        if hasattr(model, "features") and hasattr(model, "classify_from"):
            cam = np.asarray(gc.gradcam(model, ex["frames"], ex["landmarks"], pred, layer=layer))
            interp_fig.save_gradcam_strip(imagenet_to_uint8(ex["frames"]), cam, out / f"gradcam_{index}.png",
                                          title=f"Grad-CAM ({layer}) - {title}")  # fmt: skip
            notes.append(f"wrote gradcam_{index}.png")
        per_clip[index] = {"label": class_names[label], "pred": class_names[pred]}
        if not with_au:
            continue
        scores = au.au_scores(ex["landmarks"])
        interp_fig.save_au_plot(scores, au.AU_NAMES, out / f"au_{index}.png", title=title)
        per_clip[index]["au"] = au.clip_summary(scores)
        notes.append(f"wrote au_{index}.png")
    return notes, per_clip


def au_by_class(landmarks: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Mean per-clip AU peak ``{class: {AU: value}}`` over a split (landmarks ``(N, T, 68, 2)``): which
    movements characterise each expression (paper 1's AU analysis)."""
    from fer_jax.interpret import au

    peaks = np.stack([au.au_scores(clip).max(axis=0) for clip in landmarks])  # (N, n_aus)
    return {
        name: dict(zip(au.AU_NAMES, peaks[labels == c].mean(axis=0).round(4).tolist(), strict=True))
        for c, name in enumerate(class_names)
        if (labels == c).any()
    }


def au_class_figure(table: dict):
    import matplotlib.pyplot as plt

    from fer_jax.interpret.au import AU_NAMES
    from fer_jax.training import figures  # noqa: F401  (selects the Agg backend)

    names = list(table)
    grid = np.asarray([[table[n][a] for a in AU_NAMES] for n in names])
    lim = max(float(np.abs(grid).max()), 1e-6)
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    im = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(AU_NAMES)), AU_NAMES, rotation=45)
    ax.set_yticks(range(len(names)), names)
    ax.set_title("Mean AU peak per class (x inter-ocular distance, relative to frame 1)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def interpret(workdir: str | Path, *, clips: list[int], split: str | None = None, checkpoint: str = "best",
              out_dir: str | Path | None = None, layer: str = "refined") -> dict:  # fmt: skip
    """Writes the interpretation figures of a run (see the module docstring).

    Returns ``{"expert_usage": dict | None, "au_by_class": dict | None, "clips": {index: {...}},
    "notes": [...], "out_dir": str}``.
    """
    from fer_jax.interpret import au
    from fer_jax.training import figures as fig_lib
    from fer_jax.training.run import Run

    run = Run.restore(workdir, checkpoint)
    config, class_names, names = run.config, run.class_names, run.input_names
    split = split or config.data.eval_split
    out = as_path(out_dir) if out_dir else as_path(workdir) / "interpret" / split
    out.mkdir(parents=True, exist_ok=True)
    wanted, chosen, preds = set(clips), {}, {}
    chunks: dict[str, list] = {}
    lms: list[np.ndarray] = []
    for batch in run.eval_iterator(split):
        outs = run.predict_batch(batch)
        keep = outs["mask"].astype(bool)
        for k, v in outs.items():
            if k != "mask" and v.ndim and v.shape[0] == keep.shape[0]:
                chunks.setdefault(k, []).append(v[keep])
        if "landmarks" in batch:
            lms.append(np.asarray(batch["landmarks"])[keep])
        for row, idx in enumerate(np.asarray(batch.get("index", [])).tolist()):
            if idx in wanted and keep[row]:
                # normalised as the steps do (the batches may carry uint8 frames): Grad-CAM runs the model
                chosen[idx] = run.normalized_inputs({k: np.asarray(batch[k])[row] for k in (*names, "label")})
                preds[idx] = int(outs["pred"][row])
    outputs = {k: np.concatenate(v) for k, v in chunks.items()}
    notes = [f"checkpoint step {run.step}, split {split}, {len(outputs.get('label', []))} examples"]
    notes[:0] = run.notes  # an unreadable newest checkpoint that restoring `latest` skipped
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
    au_table, per_clip = None, {}
    no_au = au.au_unavailable(run.info.preprocessing) if lms else None
    if no_au:
        notes.append(no_au)
    elif lms:
        au_table = au_by_class(np.concatenate(lms), outputs["label"], class_names)
        fig_lib.save(au_class_figure(au_table), out / "au_by_class.png")
        notes.append("wrote au_by_class.png")
    if chosen and "landmarks" in names:
        more, per_clip = clip_figures(run.model(), chosen, preds, class_names, out, layer, with_au=not no_au)
        notes += more
    elif chosen:
        notes.append(f"Grad-CAM / AU skipped: {config.model.name} takes no (frames, landmarks) clips")
    if au_table is not None or any("au" in c for c in per_clip.values()):
        (out / "au.json").write_text(json.dumps({"by_class": au_table, "clips": per_clip}, indent=2) + "\n")
    return {
        "expert_usage": usage,
        "au_by_class": au_table,
        "clips": per_clip,
        "notes": notes,
        "out_dir": str(out),
    }
