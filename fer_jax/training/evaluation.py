"""One pass (or several stochastic passes) of a model over an evaluation split, gathered on every process
and turned into the paper's metrics and per-clip prediction rows. Used through ``Run.evaluate`` by the
training loop, ``fer_jax.evaluate`` and ``fer_jax.interpret``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from fer_jax import metrics as metrics_lib
from fer_jax.training import mesh as mesh_lib

# what a batch carries besides the model inputs; index: position in the split (pipeline)
BATCH_KEYS = ("label", "mask", "lighting", "index")
_ID_BYTES = 256  # clip ids travel between processes as fixed-width UTF-8


def _as_str_array(ids: np.ndarray) -> np.ndarray:
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(ids).ravel()], object)


def _global_ids(local_ids: np.ndarray) -> np.ndarray:
    """This process's clip ids ``(local_B,)`` -> the global batch's ``(B,)``, in the row order that
    ``mesh.put_batch`` assembles (process 0's rows first)."""
    ids = _as_str_array(local_ids)
    if jax.process_count() == 1:
        return ids
    from jax.experimental import multihost_utils

    enc = np.zeros((len(ids), _ID_BYTES), np.uint8)
    for i, s in enumerate(ids):
        b = s.encode()[:_ID_BYTES]
        enc[i, : len(b)] = np.frombuffer(b, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(enc, tiled=True))
    return np.array([bytes(r).rstrip(b"\0").decode(errors="replace") for r in rows], object)


def device_batch(batch: dict, input_names: Sequence[str], mesh: Mesh) -> dict:
    """Keeps the model inputs and ``label``/``mask``/``lighting``; places them sharded on ``'data'``."""
    keep = {k: np.asarray(batch[k]) for k in (*input_names, *BATCH_KEYS) if k in batch}
    return mesh_lib.put_batch(keep, mesh)


def collect(
    eval_fn: Callable, params: Any, rest: Any, iterator, input_names: Sequence[str], mesh: Mesh
) -> dict:
    """Runs ``eval_fn`` over a finite iterator; returns numpy arrays over all real examples (mask applied):
    ``probs`` (N, C), ``pred``, ``label``, optional ``lighting``, ``index``, ``id`` (str objects, when the
    batches carry clip ids) and ``stats/*``."""
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
        if "id" in batch:  # strings stay on the host: gathered across processes here, not by the step
            chunks.setdefault("id", []).append(_global_ids(batch["id"])[keep])
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


def _mean_over_passes(runs: list[dict]) -> dict:
    """The first pass's outputs with ``probs`` the mean over passes and ``pred`` its argmax. Passes are
    matched by ``index`` (the split position) when the batches carry it, else by row."""
    first = dict(runs[0])
    if len(runs) == 1:
        return first
    if "index" in first:
        order = [np.argsort(r["index"], kind="stable") for r in runs]
        base = runs[0]["index"][order[0]]
        if any(not np.array_equal(r["index"][o], base) for r, o in zip(runs, order)):
            raise ValueError("the evaluation passes saw different examples")
        mean = np.mean([r["probs"][o] for r, o in zip(runs, order)], axis=0)
        probs = np.empty_like(mean)
        probs[order[0]] = mean  # back to the first pass's row order
    else:
        probs = np.mean([r["probs"] for r in runs], axis=0)
    first["probs"] = probs.astype(np.float32)
    first["pred"] = np.argmax(probs, -1).astype(np.int32)
    return first


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
    ``passes_detail`` lists each pass's WAR/UAR. Returns ``(metrics, outputs)``: ``outputs`` as
    :func:`collect` of the first pass, with ``probs`` the mean over passes and ``pred`` its argmax."""
    per_pass, runs = [], []
    for p in range(max(int(passes), 1)):
        outputs = collect(eval_fn, params, rest, make_iterator(p), input_names, mesh)
        if not outputs:
            raise ValueError("the evaluation split yielded no examples")
        per_pass.append(summarize(outputs, num_classes, class_names, lighting_names))
        runs.append(outputs)
    if len(per_pass) == 1:
        return per_pass[0], runs[0]
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
    return out, _mean_over_passes(runs)


def prediction_rows(
    outputs: dict, class_names: Sequence[str], lighting_names: Sequence[str] | None = None
) -> list[dict]:
    """One JSON-ready row per example of :func:`collect`'s outputs, in split order when indexed:
    ``{"id", "label", "pred", "probs": {class: p}}`` (+ ``"lighting"`` where the data has it). ``id`` is
    the record's id, else its split position."""
    n = len(outputs["probs"])
    order = np.argsort(outputs["index"], kind="stable") if "index" in outputs else np.arange(n)
    rows = []
    for i in order.tolist():
        if "id" in outputs:
            clip = str(outputs["id"][i])
        else:
            clip = str(int(outputs["index"][i])) if "index" in outputs else str(i)
        row = {
            "id": clip,
            "label": class_names[int(outputs["label"][i])],
            "pred": class_names[int(outputs["pred"][i])],
            "probs": {str(c): float(p) for c, p in zip(class_names, outputs["probs"][i])},
        }
        if lighting_names and "lighting" in outputs:
            row["lighting"] = lighting_names[int(outputs["lighting"][i])]
        rows.append(row)
    return rows
