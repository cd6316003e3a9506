"""Deterministic weights and inputs of the MCO-E Net parity golden (numpy only; shared by
``make_mco_goldens.py`` (dev-only, runs the authors' torch model) and ``tests/test_convert_mco.py``).

Sizes (:data:`SIZES`) are the official model's except where its weights would be large: ResNet-18 heads
of ``BACKBONE_CLASSES`` logits instead of 1000 (so ``2 * 16 / 4`` = 8 tokens instead of 500) and a neck
of ``NECK_DIM`` instead of 1024. Nothing but shapes is stored: both sides draw every entry from
``(SEED, crc32(key))``. The torchvision ResNet keys follow ``golden_weights.weight_for``; the rest:

- ``A_log_*`` / ``A_b_log_*``: ``log(1..N)`` + 0.1 normal, drawn from the key WITHOUT its modality,
  so the rgb / event pair is equal as in their code (one tensor behind two parameters);
- ``D*``: 1 + 0.1 normal; ``dt_proj*.bias``: U(-4.5, -2.5) (softplus -> dt 0.01..0.08, Mamba's range);
- 3-d conv weights: normal * sqrt(1 / fan_in); ``in_proj_weight``: normal * sqrt(1 / in);
  ``res_coef``: 0.3 + 0.05 normal; other 1-d ``weight`` (LayerNorm): U(0.5, 1); ``*bias``: 0.1 normal.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
from golden_weights import weight_for as torchvision_weight_for

SEED = 20261130
INPUT_SEED = 11
BACKBONE_CLASSES = 16
NECK_DIM = 32
IMAGE_SIZE = 32
BATCH = 2
NUM_FRAMES = 2  # first and last frame; their loader feeds 4, the model reads [0] and [-1]
SIZES = {"backbone_classes": BACKBONE_CLASSES, "neck_dim": NECK_DIM, "image_size": IMAGE_SIZE}


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(key.encode())])


def weight_for(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The deterministic value of the authors' state-dict entry ``key`` with torch shape ``shape``."""
    shape = tuple(int(s) for s in shape)
    if re.match(r"res\d\d\.resnet\.", key):
        return (
            torchvision_weight_for(key.split(".", 2)[2], shape)
            if "num_batches" not in key
            else np.zeros(shape, np.int64)
        )
    leaf = key.rsplit(".", 1)[-1]
    if re.fullmatch(r"A(_b)?_log_(rgb|event)", leaf):
        base = np.log(np.tile(np.arange(1, shape[1] + 1, dtype=np.float64), (shape[0], 1)))
        w = base + 0.1 * _rng(key.rsplit("_", 1)[0]).standard_normal(shape)
    elif re.fullmatch(r"D(_b)?_(rgb|event)", leaf):
        w = 1.0 + 0.1 * _rng(key).standard_normal(shape)
    elif re.search(r"dt_proj(_b)?_(rgb|event)\.bias$", key):
        w = _rng(key).uniform(-4.5, -2.5, shape)
    elif leaf == "res_coef":
        w = 0.3 + 0.05 * _rng(key).standard_normal(shape)
    elif leaf in ("bias", "in_proj_bias"):
        w = 0.1 * _rng(key).standard_normal(shape)
    elif leaf in ("weight", "in_proj_weight") and len(shape) == 1:
        w = _rng(key).uniform(0.5, 1.0, shape)
    elif leaf in ("weight", "in_proj_weight") and len(shape) in (2, 3):
        w = _rng(key).standard_normal(shape) * np.sqrt(1.0 / int(np.prod(shape[1:])))
    else:
        raise ValueError(f"no weight rule for {key} {shape}")
    return np.asarray(w, np.float32)


def make_state_dict(manifest: list[tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """``{key: weight_for(key, shape)}`` for the (torch key, torch shape) list of the golden."""
    return {key: weight_for(key, shape) for key, shape in manifest}


def make_inputs() -> dict[str, np.ndarray]:
    """``rgb`` and ``event`` ``(BATCH, NUM_FRAMES, S, S, 3)`` float32 standard normal (fer_jax layout)."""
    rng = np.random.default_rng(INPUT_SEED)
    shape = (BATCH, NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3)
    return {k: rng.standard_normal(shape).astype(np.float32) for k in ("rgb", "event")}
