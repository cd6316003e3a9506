"""A tiny video model for the CLI tests (predict, evaluate, robustness): trains in seconds on the fixtures.

frames (B, T, S, S, 3), landmarks (B, T, 68, 2) -> {"logits": (B, num_classes)} from the pooled colour and
landmarks. Registered as ``NAME`` on import (in this process only: a CLI run in a subprocess does not see it).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.models import registry

NAME = "tiny_video_test"


class TinyVideoNet(nnx.Module):
    def __init__(self, config, *, rngs):
        self.fc = nnx.Linear(3 + 2, config.model.num_classes, rngs=rngs)

    def __call__(self, frames, landmarks):
        feats = jnp.concatenate([frames.mean(axis=(1, 2, 3)), landmarks.mean(axis=(1, 2))], axis=-1)
        return {"logits": self.fc(feats)}


def input_spec(config):
    t, s = config.data.num_frames, config.data.image_size
    return {"frames": ((t, s, s, 3), np.float32), "landmarks": ((t, 68, 2), np.float32)}


registry.register(NAME, lambda config, *, rngs: TinyVideoNet(config, rngs=rngs), input_spec)
