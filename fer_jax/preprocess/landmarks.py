"""68-point facial landmarks (iBUG-68 order): the mirror permutation, affine transforms, landmark files
and OpenCV's LBF facemark. The template ``TEMPLATE_68`` and ``FACE_MARGIN`` are defined in
:mod:`fer_jax.data.constants` and re-exported here.

Coordinates are (x, y). Source landmarks (``landmarks/<id>.npy``, ``(n, 68, 2)``) are pixels of the source
frame; stored landmarks are in [0, 1] of the output frame, which is what the landmark mask and the AU
analyzer read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fer_jax.data.constants import FACE_MARGIN, NUM_LANDMARKS, TEMPLATE_68

# The template and the crop margin live in fer_jax.data.constants (one home); re-exported here for the
# preprocessing code that has always imported them from this module.


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_LANDMARKS)
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # eyebrows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


# Index map for a horizontal flip: ``flipped[i] = mirror(points[FLIP_PERMUTATION_68[i]])``.
FLIP_PERMUTATION_68 = _flip_permutation()
FLIP_PERMUTATION_68.setflags(write=False)


def flip_landmarks(points: np.ndarray) -> np.ndarray:
    """Mirror ``(..., 68, 2)`` landmarks in [0, 1] left-right, keeping each index on its facial part."""
    out = np.asarray(points)[..., FLIP_PERMUTATION_68, :].copy()
    out[..., 0] = 1.0 - out[..., 0]
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Applies a 2x3 affine ``matrix`` (cv2 convention, pixel -> pixel) to ``(..., 2)`` points."""
    p = np.asarray(points, np.float64)
    m = np.asarray(matrix, np.float64)
    return p @ m[:, :2].T + m[:, 2]


def load_landmark_file(path: str | os.PathLike, num_frames: int | None = None) -> np.ndarray:
    """``(n, 68, 2)`` float32 pixel landmarks from a ``.npy``; ``ValueError`` on a wrong shape or values."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one recorded reason
        raise ValueError(f"unreadable landmark file {path} ({type(e).__name__})") from e
    if arr.ndim == 2 and arr.shape == (NUM_LANDMARKS, 2):
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmark file {path} has shape {arr.shape}, expected (n, 68, 2)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"landmark file {path} holds non-finite values")
    if num_frames is not None and arr.shape[0] != num_frames:
        raise ValueError(f"landmark file {path} has {arr.shape[0]} frames, the clip has {num_frames}")
    return arr.astype(np.float32)


class LBFLandmarker:
    """OpenCV's LBF facemark (``cv2.face``, from opencv-contrib) with a user-supplied model file."""

    def __init__(self, model_path: str | os.PathLike):
        import cv2

        if not hasattr(cv2, "face"):
            raise ValueError("--landmarks lbf needs cv2.face (pip install opencv-contrib-python-headless<5)")
        if not Path(model_path).is_file():
            raise ValueError(f"no LBF model file at {model_path}")
        self._fm = cv2.face.createFacemarkLBF()
        self._fm.loadModel(str(model_path))

    def __call__(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
        """``(68, 2)`` pixel landmarks of the face in ``box`` (x, y, w, h), or None when the fit fails."""
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        ok, shapes = self._fm.fit(gray, np.array([box], np.int32))
        if not ok or not len(shapes):
            return None
        return np.asarray(shapes[0]).reshape(NUM_LANDMARKS, 2).astype(np.float32)


__all__ = [
    "FACE_MARGIN",
    "FLIP_PERMUTATION_68",
    "NUM_LANDMARKS",
    "TEMPLATE_68",
    "LBFLandmarker",
    "flip_landmarks",
    "load_landmark_file",
    "transform_points",
]
