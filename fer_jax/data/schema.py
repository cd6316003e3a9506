"""The record schema of the shards: the TFDS features of each dataset and frame encoding / decoding (the
class and lighting names are re-exported from :mod:`fer_jax.data.constants`).

One example of each dataset (T / K frames, side S):
- DFEW: ``frames`` (JPEG: ``(T,)`` bytes; raw: ``(T, S, S, 3)`` uint8), ``landmarks`` ``(T, 68, 2)``
  float32 in [0, 1] (absent with ``--landmarks none``), ``face_found`` ``(T,)`` bool, ``label``, ``id``;
  with ``--simulate-events`` also ``event`` ``(T, S, S, B)`` float16 voxel grids.
- SEE / DSEE: ``rgb`` (JPEG ``(K,)`` bytes or ``(K, H, W, 3)`` uint8), ``event`` (event frames like
  ``rgb``, or voxel grids ``(K, H, W, B)`` float16), ``label``, ``lighting``, ``id``, ``num_source_frames``;
  H = W = S unless built with ``--resize shorter`` (the aspect kept: 100 x 133 for SEE at ``--size 100``).

Features are ``tfds.features.Tensor`` / ``ClassLabel`` only: they build and read without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Class and lighting names live in fer_jax.data.constants; re-exported for the builders that import them here.
from fer_jax.data.constants import DFEW_CLASS_NAMES, LIGHTING_NAMES, NUM_LANDMARKS, SEE_CLASS_NAMES

ENCODINGS = ("jpeg", "raw")
JPEG_QUALITY = 95


def features(
    dataset: str,
    *,
    encoding: str,
    size: int,
    class_names: Sequence[str],
    landmarks: bool = True,
    event: str | None = None,
    bins: int = 3,
    hw: tuple[int, int] | None = None,
):
    """The ``tfds.features.FeaturesDict`` of a dataset. ``event``: None, ``"frames"`` (per-frame event
    images, encoded like the RGB frames) or ``"voxel"`` (float16 grids with ``bins`` channels). Frames
    are ``size x size``, or ``hw = (H, W)`` when given (non-square SEE frames)."""
    import tensorflow_datasets as tfds

    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")
    h, w = (size, size) if hw is None else (int(hw[0]), int(hw[1]))
    T = tfds.features.Tensor
    frames = (
        T(shape=(None,), dtype=np.object_) if encoding == "jpeg" else T(shape=(None, h, w, 3), dtype=np.uint8)
    )
    d = {"label": tfds.features.ClassLabel(names=list(class_names)), "id": T(shape=(), dtype=np.str_)}
    if dataset == "dfew":
        d["frames"] = frames
        d["face_found"] = T(shape=(None,), dtype=np.bool_)
        if landmarks:
            d["landmarks"] = T(shape=(None, NUM_LANDMARKS, 2), dtype=np.float32)
    else:
        d["rgb"] = frames
        d["lighting"] = tfds.features.ClassLabel(names=list(LIGHTING_NAMES))
        d["num_source_frames"] = T(shape=(), dtype=np.int32)
    if event == "frames":
        d["event"] = frames
    elif event == "voxel":
        d["event"] = T(shape=(None, h, w, bins), dtype=np.float16)
    elif event is not None:
        raise ValueError(f"unknown event kind {event!r}")
    return tfds.features.FeaturesDict(d)


def encode_frames(frames: np.ndarray, encoding: str) -> list[bytes] | np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> what the record stores (JPEG bytes per frame, or the array)."""
    frames = np.asarray(frames, np.uint8)
    if encoding == "raw":
        return frames
    if encoding != "jpeg":
        raise ValueError(f"unknown encoding {encoding!r}")
    out = []
    for f in frames:
        bgr = cv2.cvtColor(f, cv2.COLOR_RGB2BGR) if f.shape[-1] == 3 else f
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("JPEG encoding failed")
        out.append(buf.tobytes())
    return out


def decode_frames(stored: np.ndarray, indices: Sequence[int] | None = None) -> np.ndarray:
    """The stored frames (object array of JPEG bytes, or a uint8 array) -> ``(K, H, W, 3)`` uint8 RGB;
    ``indices`` decodes only those frames (in that order, repeats allowed)."""
    arr = np.asarray(stored)
    if indices is None:
        indices = range(len(arr))
    if arr.dtype != object:
        return arr[np.asarray(list(indices), np.int64)]
    out = []
    for i in indices:
        img = cv2.imdecode(np.frombuffer(arr[i], np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"stored frame {i} does not decode")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out)


__all__ = [
    "DFEW_CLASS_NAMES",
    "ENCODINGS",
    "JPEG_QUALITY",
    "LIGHTING_NAMES",
    "SEE_CLASS_NAMES",
    "decode_frames",
    "encode_frames",
    "features",
]
