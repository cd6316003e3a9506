"""Deterministic weights and inputs shared by the golden generator and the parity tests (numpy only).

Both sides must draw exactly the same numbers: ``make_goldens.py`` (dev-only, runs torchvision) and the
CI tests (no torch) call these functions. Every key gets its own generator seeded by ``(SEED,
crc32(key))``, so the draw does not depend on the order of the keys. Rule by parameter kind, chosen so
that activations stay O(1) through the deep nets (a parity check on exploding or vanishing numbers
would prove nothing):

- conv weight ``(out, in/groups, kh, kw)`` (or 3D ``(out, in, kt, kh, kw)``): normal * sqrt(1 / fan_in),
  fan_in = in/groups * kh * kw (* kt);
- linear weight ``(out, in)``: normal * sqrt(1 / in);
- BatchNorm weight (1-d ``*.weight``): uniform [0.5, 1.0];
- any bias: 0.1 * normal;
- ``running_mean``: 0.1 * normal; ``running_var``: uniform [0.5, 1.5] (positive);
- ``num_batches_tracked``: 0 (int64), as a fresh torch model has;
- token parameters (Former-DFER's ``pos_embedding``, ``cls_token``): normal, as the authors' torch.randn.
Inputs: standard normal NHWC float32 from ``default_rng(IMAGE_SEED + size)``; clips ``(n, T, S, S, 3)``
from ``default_rng([IMAGE_SEED, T, S])``.
"""

from __future__ import annotations

import zlib

import numpy as np

SEED = 20240611
IMAGE_SEED = 7


def weight_for(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The deterministic value of state-dict entry ``key`` with torch shape ``shape``."""
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.zeros(shape, np.int64)
    rng = np.random.default_rng([SEED, zlib.crc32(key.encode())])
    if leaf == "running_mean":
        w = 0.1 * rng.standard_normal(shape)
    elif leaf == "running_var":
        w = rng.uniform(0.5, 1.5, shape)
    elif leaf == "bias":
        w = 0.1 * rng.standard_normal(shape)
    elif leaf == "weight" and len(shape) == 1:
        w = rng.uniform(0.5, 1.0, shape)
    elif leaf in ("pos_embedding", "cls_token"):
        w = rng.standard_normal(shape)
    elif leaf == "weight" and len(shape) in (2, 4, 5):
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
    else:
        raise ValueError(f"no weight rule for {key} {shape}")
    return w.astype(np.float32)


def make_state_dict(manifest: list[tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """``{key: weight_for(key, shape)}`` for a list of (torch key, torch shape)."""
    return {key: weight_for(key, shape) for key, shape in manifest}


def make_images(n: int, size: int) -> np.ndarray:
    """``(n, size, size, 3)`` float32 standard normal images (NHWC)."""
    return np.random.default_rng(IMAGE_SEED + size).standard_normal((n, size, size, 3)).astype(np.float32)


def make_clips(n: int, frames: int, size: int) -> np.ndarray:
    """``(n, frames, size, size, 3)`` float32 standard normal clips (NTHWC)."""
    rng = np.random.default_rng([IMAGE_SEED, frames, size])
    return rng.standard_normal((n, frames, size, size, 3)).astype(np.float32)


def fingerprint(arrays: list[np.ndarray]) -> np.ndarray:
    """``[sum, sum of squares]`` in float64: tells a numpy RNG change apart from a port bug."""
    total = sum(float(np.sum(a, dtype=np.float64)) for a in arrays)
    squares = sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays)
    return np.array([total, squares])
