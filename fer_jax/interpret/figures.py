"""PNG figures for interpretation: the Grad-CAM temporal strip (paper 1, Figs. 3-4) and AU curves.

Uses matplotlib's object API with the Agg canvas, so importing this module does not change the global
backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fer_jax.paths import savefig


def _upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2  # local: only the figure writers need OpenCV

    return cv2.resize(np.asarray(heatmap, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def save_gradcam_strip(
    frames_uint8: np.ndarray,
    heatmaps: np.ndarray,
    path: str | Path,
    *,
    title: str | None = None,
    alpha: float = 0.45,
) -> Path:
    """Draws frames ``(T, H, W, 3)`` uint8 with heatmaps ``(T, h, w)`` in [0, 1] overlaid, one column per
    frame, and writes a PNG. Returns the path."""
    frames = np.asarray(frames_uint8)
    heat = np.asarray(heatmaps)
    if frames.ndim != 4 or heat.ndim != 3 or frames.shape[0] != heat.shape[0]:
        raise ValueError(
            f"expected frames (T, H, W, 3) and heatmaps (T, h, w), got {frames.shape}, {heat.shape}"
        )
    t, h, w = frames.shape[:3]
    fig = Figure(figsize=(1.6 * t, 2.0 if title else 1.7))
    FigureCanvasAgg(fig)
    for i in range(t):
        ax = fig.add_subplot(1, t, i + 1)
        ax.imshow(frames[i])
        ax.imshow(_upsample(heat[i], h, w), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        ax.set_title(f"frame {i + 1}", fontsize=7)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return savefig(fig, path, dpi=100, bbox_inches="tight")  # a gs:// folder too (fer_jax.paths)


def save_au_plot(
    scores: np.ndarray, names: Sequence[str], path: str | Path, *, title: str | None = None
) -> Path:
    """Plots AU scores ``(T, n)`` over frames, one line per AU, as PNG. Returns the path."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise ValueError(f"scores must be (T, {len(names)}), got {scores.shape}")
    fig = Figure(figsize=(6, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, name in enumerate(names):
        ax.plot(np.arange(1, scores.shape[0] + 1), scores[:, i], label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel("AU score (x IOD, vs frame 1)")
    ax.legend(fontsize=6, ncol=4)
    if title:
        ax.set_title(title)
    return savefig(fig, path, dpi=100, bbox_inches="tight")  # a gs:// folder too (fer_jax.paths)
