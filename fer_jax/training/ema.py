"""Exponential moving average of the model parameters (MambaFER trains with an EMA of the weights).

The decay warms up as ``min(decay, (1 + step) / (10 + step))`` (the timm / TF convention) so that a
short run's average is not dominated by the random initialisation; evaluation uses the EMA parameters
with the live model's BatchNorm statistics when ``train.ema_decay > 0``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ema_decay_at(decay: float, step: jax.Array) -> jax.Array:
    """Effective decay at optimizer ``step`` (0-based): warm-up, capped at ``decay``."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema: Any, params: Any, decay: jax.Array) -> Any:
    """``ema * decay + params * (1 - decay)`` leaf-wise (same pytree structure)."""
    return jax.tree.map(lambda e, p: e * decay + p.astype(e.dtype) * (1.0 - decay), ema, params)
