"""Figures written at each evaluation: the confusion matrix (paper 1 Fig. 5 style: row-normalised, with
counts) and the training curves (paper 1 Fig. 2 style: loss and WAR/UAR over steps)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fer_jax.paths import savefig  # noqa: E402


def confusion_figure(cm: np.ndarray, class_names: Sequence[str], title: str = "Confusion matrix"):
    """Row-normalised confusion matrix ``(C, C)`` as a matplotlib Figure (cells show % and count)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{100 * norm[i, j]:.0f}%\n{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color=color,
            )
    fig.tight_layout()
    return fig


def curves_figure(rows: Sequence[dict], eval_split: str = "test"):
    """Train loss and evaluation WAR/UAR against step, from ``metrics.jsonl`` rows."""
    train = [r for r in rows if r.get("split") == "train" and r.get("loss") is not None]
    evals = [r for r in rows if r.get("split") == eval_split and r.get("uar") is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    if train:
        ax1.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.set_title("Training loss")
    for key in ("war", "uar"):
        if evals:
            ax2.plot([r["step"] for r in evals], [100 * r[key] for r in evals], marker="o", label=key.upper())
    ax2.set_xlabel("step")
    ax2.set_ylabel("%")
    ax2.set_title(f"{eval_split} WAR / UAR")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def save(fig, path: str | Path) -> Path:
    path = savefig(fig, path)  # a gs:// run folder too (fer_jax.paths)
    plt.close(fig)
    return path
