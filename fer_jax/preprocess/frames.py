"""Frame bookkeeping shared by the builders, the pipeline and predict: natural sort of frame files and the
choice of which frames of a clip to keep.

DFEW frame folders name files ``1.jpg, 2.jpg, ..., 10.jpg`` (and the 16f folder ``x_y.jpg`` with
UNCONFIRMED zero padding), so a lexical sort would put ``10`` before ``2``: every listing sorts naturally.
"""

from __future__ import annotations

import re

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SAMPLING_MODES = ("uniform", "random", "stride4")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded integers numerically: ``"2.jpg" < "10.jpg"``, ``"1_2" < "1_10"``."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in _DIGITS.split(str(name)))


def sample_indices(
    num_available: int,
    num_frames: int,
    *,
    mode: str = "uniform",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Indices ``(num_frames,)`` int64 into a clip of ``num_available`` frames, non-decreasing.

    Modes:
      - ``"uniform"``: the centre of each of ``num_frames`` equal segments (deterministic; short clips repeat
        frames, which is the paper's "repeating when too short" and DFER-CLIP's segment sampling).
      - ``"random"``: one random frame inside each segment (TSN-style training jitter); needs ``rng``.
      - ``"stride4"``: the public SEE loaders' temporal augmentation: every 4th frame from a random offset in
        ``[0, 4)`` (deterministic offset 0 without ``rng``), then ``num_frames`` spread uniformly over that
        sub-clip (so ``num_frames=2`` gives its first and last frame).
    """
    if num_available < 1:
        raise ValueError(f"cannot sample from {num_available} frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if mode == "uniform":
        return np.floor((np.arange(num_frames) + 0.5) * num_available / num_frames).astype(np.int64)
    if mode == "random":
        if rng is None:
            raise ValueError("mode='random' needs an rng")
        starts = np.arange(num_frames) * num_available / num_frames
        widths = np.full(num_frames, num_available / num_frames)
        idx = np.floor(starts + rng.random(num_frames) * widths).astype(np.int64)
        return np.clip(idx, 0, num_available - 1)
    if mode == "stride4":
        offset = int(rng.integers(0, min(4, num_available))) if rng is not None else 0
        sub = np.arange(offset, num_available, 4)
        if num_frames == 1:
            return sub[:1].astype(np.int64)
        # first and last of the sub-clip always included, the rest evenly between them
        pos = np.round(np.linspace(0, len(sub) - 1, num_frames)).astype(np.int64)
        return sub[pos].astype(np.int64)
    raise ValueError(f"unknown sampling mode {mode!r}; use one of {SAMPLING_MODES}")
