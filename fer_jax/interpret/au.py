"""Action-unit (AU) analyzer from 68-point landmarks (paper 1's "Comprehensive AU Analyzer").

Each AU score is a geometric proxy on the iBUG 68 points, normalised by the frame's inter-ocular distance
(so face size does not matter) and taken relative to the clip's first frame (so identity does not matter):
positive = the AU's movement. Image y grows downward. The proxies are approximations, not FACS coding.

``au_scores(landmarks (T, 68, 2)) -> (T, len(AU_NAMES))``; ``clip_summary`` gives per-AU peak, mean and
peak frame; ``au_sample_weights`` is the loss re-weighting of ``config.loss.au_reweight``
(``fer_jax.losses.loss_from_config``; off at 0). AU scores need landmarks of every source frame: data
built with the template (the same points in every frame) has none to measure (``au_unavailable``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.data.constants import NUM_LANDMARKS

# activity (IOD) at which the AU re-weighting has given up 76 % of its extra weight (tanh(1))
AU_WEIGHT_SCALE = 0.05
AU_NAMES = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU20", "AU25", "AU26")


def _y(lm, idx):
    return lm[..., list(idx), 1].mean(axis=-1)


def _geometry(lm, xp=np):
    """Per-frame raw measures ``(..., T, n_aus)`` in units of inter-ocular distance (sign: AU active =
    larger) from ``(..., T, 68, 2)``; ``xp`` is numpy or jax.numpy. Frames without landmarks (all zero:
    no inter-ocular distance) measure 0."""
    right_eye, left_eye = lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2)
    iod = xp.sqrt(xp.sum((left_eye - right_eye) ** 2, axis=-1))
    corners = _y(lm, (48, 54))
    g = xp.stack(
        [
            _y(lm, (39, 42)) - _y(lm, (21, 22)),  # AU1 inner brow above inner eye corners
            _y(lm, (36, 45)) - _y(lm, (17, 26)),  # AU2 outer brow above outer eye corners
            -xp.abs(lm[..., 22, 0] - lm[..., 21, 0])
            - (_y(lm, (39, 42)) - _y(lm, (21, 22))),  # AU4 brows together+down
            _y(lm, (36, 39, 42, 45)) - _y(lm, (37, 38, 43, 44)),  # AU5 upper lid above the corner line
            -(corners - _y(lm, (40, 41, 46, 47))),  # AU6 cheek raise: lower lid closer to mouth corners
            _y(lm, (36, 39, 42, 45)) - _y(lm, (40, 41, 46, 47)),  # AU7 lower lid raised toward corner line
            -(lm[..., 33, 1] - lm[..., 27, 1]),  # AU9 nose shortens
            -(lm[..., 51, 1] - lm[..., 33, 1]),  # AU10 upper lip toward nose
            -(corners - lm[..., 33, 1]),  # AU12 lip corners raised relative to the nose
            corners - lm[..., 62, 1],  # AU15 corners lowered relative to the upper inner lip
            xp.abs(lm[..., 54, 0] - lm[..., 48, 0]),  # AU20 mouth width
            lm[..., 66, 1] - lm[..., 62, 1],  # AU25 lips part
            lm[..., 8, 1] - lm[..., 33, 1],  # AU26 jaw drop
        ],
        axis=-1,
    )
    ok = iod > 1e-6
    return xp.where(ok[..., None], g / xp.where(ok, iod, 1.0)[..., None], 0.0)


def au_scores(landmarks: np.ndarray) -> np.ndarray:
    """AU scores ``(T, 13)`` (order ``AU_NAMES``) from landmarks ``(T, 68, 2)``, relative to frame 0."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 2) or lm.shape[0] == 0:
        raise ValueError(f"landmarks must be (T, 68, 2) with T >= 1, got {lm.shape}")
    g = _geometry(lm)
    return (g - g[:1]).astype(np.float32)


def au_unavailable(preprocessing: Mapping[str, Any]) -> str | None:
    """Why AU scores cannot be measured on data built with ``preprocessing`` (a manifest's block), or
    None when they can. Template (or no) landmarks put the same points in every frame: every score,
    measured against frame 0, would be exactly 0."""
    source = preprocessing.get("landmarks")  # absent (data not built by data_prep.build): not known
    if source in ("template", "none"):
        return (
            f"AU analysis unavailable: the data was built with --landmarks {source} (no per-frame landmarks, "
            "every AU score would be 0); rebuild with --landmarks dlib or file:DIR"
        )
    return None


def clip_summary(scores: np.ndarray, threshold: float = 0.03) -> dict[str, dict[str, float]]:
    """Per AU: ``peak`` (max over frames), ``mean``, ``peak_frame`` and ``active`` (peak > threshold IOD)."""
    return {
        name: {
            "peak": float(scores[:, i].max()),
            "mean": float(scores[:, i].mean()),
            "peak_frame": int(scores[:, i].argmax()),
            "active": bool(scores[:, i].max() > threshold),
        }
        for i, name in enumerate(AU_NAMES)
    }


def au_activity(landmarks, xp=np):
    """Per clip, the largest AU movement ``max_{t, AU} |score|`` (inter-ocular distances, relative to
    the clip's first frame): ``(B, T, 68, 2)`` -> ``(B,)``; numpy or jax.numpy (``xp``), jit-safe."""
    g = _geometry(landmarks, xp)
    return xp.max(xp.abs(g - g[..., :1, :]), axis=(-2, -1))


def au_sample_weights(landmarks, strength: float = 0.0, scale: float = AU_WEIGHT_SCALE):
    """AU-guided loss weights ``(B,)`` from landmarks ``(B, T, 68, 2)`` (the re-weighting of
    ``config.loss.au_reweight``): ``w = 1 + strength * (1 - tanh(activity / scale))``.

    Subtle clips (little AU movement; paper 1: Disgust and Fear are the subtle, confused classes) weigh
    up to ``1 + strength``, clips with a clear movement (activity >> ``scale`` IOD) stay near 1.
    ``strength = 0`` gives ones. A numpy input gives a float32 numpy array, a jax one a jax array.
    """
    if isinstance(landmarks, jax.Array):
        a = au_activity(landmarks.astype(jnp.float32), jnp)
        return 1.0 + strength * (1.0 - jnp.tanh(a / scale))
    lm = np.asarray(landmarks, np.float64)
    if strength == 0:
        return np.ones(lm.shape[0], np.float32)
    return (1.0 + strength * (1.0 - np.tanh(au_activity(lm) / scale))).astype(np.float32)
