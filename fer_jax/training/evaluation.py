"""One pass (or several stochastic passes) of a model over an evaluation split, gathered on every process
and turned into the paper's metrics. Shared by the training loop and ``fer_jax.evaluate``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from fer_jax import metrics as metrics_lib
from fer_jax.training import mesh as mesh_lib

BATCH_KEYS = ("label", "mask", "lighting", "index")  # index: position in the split (pipeline)


def device_batch(batch: dict, input_names: Sequence[str], mesh: Mesh) -> dict:
    """Keeps the model inputs and ``label``/``mask``/``lighting``; places them sharded on ``'data'``."""
    keep = {k: np.asarray(batch[k]) for k in (*input_names, *BATCH_KEYS) if k in batch}
    return mesh_lib.put_batch(keep, mesh)


def collect(
    eval_fn: Callable, params: Any, rest: Any, iterator, input_names: Sequence[str], mesh: Mesh
) -> dict:
    """Runs ``eval_fn`` over a finite iterator; returns numpy arrays over all real examples (mask applied):
    ``probs`` (N, C), ``pred``, ``label``, optional ``lighting`` and ``stats/*``."""
    chunks: dict[str, list[np.ndarray]] = {}
    for batch in iterator:
        n = len(next(iter(batch.values())))
        if "mask" not in batch:
            batch = {**batch, "mask": np.ones((n,), bool)}
        out = eval_fn(params, rest, device_batch(batch, input_names, mesh))
        out = jax.tree.map(np.asarray, out)
        keep = out["mask"].astype(bool)
        for k, v in out.items():
            if k != "mask" and v.ndim >= 1 and v.shape[0] == keep.shape[0]:
                chunks.setdefault(k, []).append(v[keep])
    return {k: np.concatenate(v) for k, v in chunks.items()}


def summarize(
    outputs: dict, num_classes: int, class_names: Sequence[str] | None, lighting_names: Sequence[str] | None
) -> dict:
    return metrics_lib.classification_metrics(
        outputs["label"],
        outputs["pred"],
        num_classes,
        class_names=class_names,
        lighting=outputs.get("lighting"),
        lighting_names=lighting_names,
    )


def evaluate_passes(
    make_iterator: Callable[[int], Any],
    eval_fn: Callable,
    params: Any,
    rest: Any,
    *,
    passes: int,
    input_names: Sequence[str],
    mesh: Mesh,
    num_classes: int,
    class_names: Sequence[str] | None,
    lighting_names: Sequence[str] | None,
) -> tuple[dict, dict]:
    """``passes`` evaluations (``make_iterator(pass_index)``); with more than one pass the scalar metrics
    are the mean over passes (the official MCO-E Net protocol), the confusion matrix their sum, and
    ``passes_detail`` lists each pass's WAR/UAR. Returns ``(metrics, outputs of the first pass)``."""
    per_pass, first = [], None
    for p in range(max(int(passes), 1)):
        outputs = collect(eval_fn, params, rest, make_iterator(p), input_names, mesh)
        if not outputs:
            raise ValueError("the evaluation split yielded no examples")
        per_pass.append(summarize(outputs, num_classes, class_names, lighting_names))
        first = first if first is not None else outputs
    if len(per_pass) == 1:
        return per_pass[0], first
    out = dict(per_pass[0])
    for key in ("war", "uar", "macro_f1"):
        out[key] = float(np.mean([m[key] for m in per_pass]))
    for key in ("per_class", "per_lighting"):
        if key in out:
            out[key] = {
                k: (
                    None
                    if any(m[key].get(k) is None for m in per_pass)
                    else float(np.mean([m[key][k] for m in per_pass]))
                )
                for k in out[key]
            }
    out["confusion"] = np.sum([np.asarray(m["confusion"]) for m in per_pass], axis=0).tolist()
    out["passes"] = len(per_pass)
    out["passes_detail"] = [{"war": m["war"], "uar": m["uar"]} for m in per_pass]
    return out, first
