"""68-point facial landmarks (iBUG-68 order): the canonical template, the mirror permutation, affine
transforms, landmark files and OpenCV's LBF facemark.

Coordinates are (x, y). Source landmarks (``landmarks/<id>.npy``, ``(n, 68, 2)``) are pixels of the source
frame; stored landmarks are in [0, 1] of the output frame, which is what the landmark mask and the AU
analyzer read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Margin of the face crop on each side, as a fraction of the detector's face box (``face.align_matrix``).
FACE_MARGIN = 0.2


def _template_in_box() -> np.ndarray:
    """A symmetric mean-face drawn by hand in [0, 1] of a Haar face box (x right, y down).

    Written from face proportions (eyes at 0.40 of the box height, mouth at 0.80, chin just below the box),
    not copied from a fitted shape model: it is a stand-in when no landmark source is given.
    """
    pts = np.zeros((68, 2), np.float64)
    phi = np.linspace(0.0, np.pi, 17)
    pts[0:17] = np.stack([0.5 - 0.42 * np.cos(phi), 0.40 + 0.62 * np.sin(phi)], -1)
    bx = np.linspace(0.17, 0.43, 5)
    pts[17:22] = np.stack([bx, 0.27 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], -1)
    pts[22:27] = np.stack([1.0 - bx[::-1], 0.27 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], -1)
    pts[27:31] = np.stack([np.full(4, 0.5), np.array([0.38, 0.45, 0.52, 0.59])], -1)
    pts[31:36] = [[0.41, 0.64], [0.45, 0.66], [0.5, 0.67], [0.55, 0.66], [0.59, 0.64]]
    right_eye = [[0.225, 0.40], [0.28, 0.37], [0.34, 0.37], [0.395, 0.40], [0.34, 0.425], [0.28, 0.425]]
    pts[36:42] = right_eye
    # left eye: mirror image, listed from the inner corner clockwise as iBUG does
    pts[42:48] = [[1 - x, y] for x, y in (right_eye[3], right_eye[2], right_eye[1], right_eye[0])] + [
        [1 - right_eye[5][0], right_eye[5][1]],
        [1 - right_eye[4][0], right_eye[4][1]],
    ]
    pts[48:60] = [
        [0.35, 0.80], [0.40, 0.77], [0.46, 0.755], [0.5, 0.76], [0.54, 0.755], [0.60, 0.77],
        [0.65, 0.80], [0.60, 0.84], [0.54, 0.86], [0.5, 0.865], [0.46, 0.86], [0.40, 0.84],
    ]  # fmt: skip
    pts[60:68] = [
        [0.37, 0.80], [0.44, 0.79], [0.5, 0.79], [0.56, 0.79],
        [0.63, 0.80], [0.56, 0.81], [0.5, 0.815], [0.44, 0.81],
    ]  # fmt: skip
    return pts


# (68, 2) float32 in [0, 1] of the aligned face crop that ``face.align_matrix`` produces (box + margin).
TEMPLATE_68 = ((_template_in_box() + FACE_MARGIN) / (1.0 + 2.0 * FACE_MARGIN)).astype(np.float32)
TEMPLATE_68.setflags(write=False)


def _flip_permutation() -> np.ndarray:
    perm = np.arange(68)
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
    if arr.ndim == 2 and arr.shape == (68, 2):
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (68, 2):
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
        return np.asarray(shapes[0]).reshape(68, 2).astype(np.float32)
