"""Classification metrics of the papers, in numpy: WAR, UAR, macro-F1, per-class recall, per-lighting
accuracy and the confusion matrix.

WAR (weighted average recall) is plain accuracy over examples; UAR (unweighted average recall) is the
mean of the per-class recalls. Both papers report these two; the DFER literature averages UAR over the
classes that occur in the evaluated split, which is what ``uar`` does here (a class with no example has no
recall to average).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _select(mask: np.ndarray | None, *arrays: np.ndarray | None) -> list[np.ndarray | None]:
    if mask is None:
        return list(arrays)
    mask = np.asarray(mask, dtype=bool)
    return [None if a is None else np.asarray(a)[mask] for a in arrays]


def confusion_matrix(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Counts ``(num_classes, num_classes)`` int64: row = true class, column = predicted class.

    labels, preds: ``(N,)`` ints in ``[0, num_classes)``; mask ``(N,)`` bool drops padding rows.
    """
    labels, preds = _select(mask, labels, preds)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    preds = np.asarray(preds, dtype=np.int64).reshape(-1)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in shape")
    for name, a in (("labels", labels), ("preds", preds)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} outside [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each class ``(C,)`` from a confusion matrix; NaN for a class with no example."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes that occur as a label or as a prediction (scikit-learn's convention)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    if not present.any():
        return float("nan")
    denom = support + predicted  # 2tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean())


def classification_metrics(
    labels: np.ndarray,
    preds: np.ndarray,
    num_classes: int,
    *,
    class_names: Sequence[str] | None = None,
    lighting: np.ndarray | None = None,
    lighting_names: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
) -> dict:
    """All evaluation numbers for one split.

    Args:
      labels, preds: ``(N,)`` ints; mask ``(N,)`` bool (False rows are ignored: batch padding).
      lighting: optional ``(N,)`` ints indexing ``lighting_names`` (SEE / DSEE).

    Returns a JSON-ready dict: ``war``, ``uar``, ``macro_f1``, ``per_class`` (name -> recall, None where
    the class has no example), ``per_lighting`` (name -> accuracy; only with ``lighting``), ``confusion``
    (list of lists), ``num_examples``.
    """
    labels, preds, lighting = _select(mask, labels, preds, lighting)
    cm = confusion_matrix(labels, preds, num_classes)
    n = int(cm.sum())
    recall = per_class_recall(cm)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    out = {
        "war": float(np.trace(cm) / n) if n else float("nan"),
        "uar": float(np.nanmean(recall)) if n else float("nan"),
        "macro_f1": macro_f1(cm),
        "per_class": {nm: (None if np.isnan(r) else float(r)) for nm, r in zip(names, recall)},
        "confusion": cm.tolist(),
        "num_examples": n,
    }
    if lighting is not None:
        lighting = np.asarray(lighting, dtype=np.int64).reshape(-1)
        correct = np.asarray(labels).reshape(-1) == np.asarray(preds).reshape(-1)
        num_conditions = (
            len(lighting_names) if lighting_names is not None else int(lighting.max(initial=-1)) + 1
        )
        lnames = (
            list(lighting_names) if lighting_names is not None else [str(i) for i in range(num_conditions)]
        )
        per_lighting = {}
        for i, nm in enumerate(lnames):
            sel = lighting == i
            if sel.any():
                per_lighting[nm] = float(correct[sel].mean())
        out["per_lighting"] = per_lighting
    return out
