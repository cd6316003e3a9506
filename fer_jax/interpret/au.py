"""Action-unit (AU) analyzer from 68-point landmarks (paper 1's "Comprehensive AU Analyzer").

Each AU score is a geometric proxy on the iBUG 68 points, normalised by the frame's inter-ocular distance
(so face size does not matter) and taken relative to the clip's first frame (so identity does not matter):
positive = the AU's movement. Image y grows downward. The proxies are approximations, not FACS coding.

``au_scores(landmarks (T, 68, 2)) -> (T, len(AU_NAMES))``; ``clip_summary`` gives per-AU peak, mean and
peak frame; ``au_sample_weights`` is the optional loss re-weighting (off unless a strength > 0 is given).
"""

from __future__ import annotations

import numpy as np

from fer_jax.data.constants import NUM_LANDMARKS

AU_NAMES = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU20", "AU25", "AU26")


def _y(lm, idx):
    return lm[:, list(idx), 1].mean(axis=1)


def _geometry(lm: np.ndarray) -> np.ndarray:
    """Per-frame raw measures ``(T, n_aus)`` in units of inter-ocular distance (sign: AU active = larger)."""
    right_eye, left_eye = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    iod = np.linalg.norm(left_eye - right_eye, axis=-1)
    corners = _y(lm, (48, 54))
    g = np.stack(
        [
            _y(lm, (39, 42)) - _y(lm, (21, 22)),  # AU1 inner brow above inner eye corners
            _y(lm, (36, 45)) - _y(lm, (17, 26)),  # AU2 outer brow above outer eye corners
            -np.abs(lm[:, 22, 0] - lm[:, 21, 0])
            - (_y(lm, (39, 42)) - _y(lm, (21, 22))),  # AU4 brows together+down
            _y(lm, (36, 39, 42, 45)) - _y(lm, (37, 38, 43, 44)),  # AU5 upper lid above the corner line
            -(corners - _y(lm, (40, 41, 46, 47))),  # AU6 cheek raise: lower lid closer to mouth corners
            _y(lm, (36, 39, 42, 45)) - _y(lm, (40, 41, 46, 47)),  # AU7 lower lid raised toward corner line
            -(lm[:, 33, 1] - lm[:, 27, 1]),  # AU9 nose shortens
            -(lm[:, 51, 1] - lm[:, 33, 1]),  # AU10 upper lip toward nose
            -(corners - lm[:, 33, 1]),  # AU12 lip corners raised relative to the nose
            corners - lm[:, 62, 1],  # AU15 corners lowered relative to the upper inner lip
            np.abs(lm[:, 54, 0] - lm[:, 48, 0]),  # AU20 mouth width
            lm[:, 66, 1] - lm[:, 62, 1],  # AU25 lips part
            lm[:, 8, 1] - lm[:, 33, 1],  # AU26 jaw drop
        ],
        axis=-1,
    )
    return g / iod[:, None]


def au_scores(landmarks: np.ndarray) -> np.ndarray:
    """AU scores ``(T, 13)`` (order ``AU_NAMES``) from landmarks ``(T, 68, 2)``, relative to frame 0."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 2) or lm.shape[0] == 0:
        raise ValueError(f"landmarks must be (T, 68, 2) with T >= 1, got {lm.shape}")
    g = _geometry(lm)
    return (g - g[:1]).astype(np.float32)


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


def au_sample_weights(landmarks: np.ndarray, strength: float = 0.0, scale: float = 0.05) -> np.ndarray:
    """Optional AU-guided loss weights ``(B,)`` from landmarks ``(B, T, 68, 2)``.

    Subtle clips (small peak AU movement) get up to ``1 + strength``; ``strength = 0`` (default) gives ones.
    """
    lm = np.asarray(landmarks)
    if strength == 0:
        return np.ones(lm.shape[0], np.float32)
    activity = np.array([np.abs(au_scores(clip)).max() for clip in lm])
    return (1.0 + strength * (1.0 - np.tanh(activity / scale))).astype(np.float32)
