"""Grad-CAM for video models: per-frame heatmaps of where a class logit looks.

Works with any NNX model that offers two hooks (MambaFER does):

- ``model.features(frames, landmarks) -> {layer: (B*T, h, w, C)}``;
- ``model.classify_from(layer, fmap, landmarks) -> logits (B, K)``, the rest of the forward pass.

``gradcam`` differentiates the chosen class logit with respect to the chosen map, weights each channel by
its spatially averaged gradient, sums, applies ReLU and normalises to [0, 1] (per frame or per clip). The
model runs in eval mode on a merged copy, so the caller's model and its mode are left untouched.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


@functools.partial(jax.jit, static_argnames=("graphdef", "layer", "normalize"))
def _gradcam(graphdef, state, frames, landmarks, class_index, layer, normalize):
    model = nnx.merge(graphdef, state)
    model.eval()
    fmap = model.features(frames[None], landmarks[None])[layer]  # (T, h, w, C)

    def class_logit(a):
        return model.classify_from(layer, a, landmarks[None])[0, class_index]

    grads = jax.grad(class_logit)(fmap)
    weights = jnp.mean(grads, axis=(1, 2), keepdims=True)  # (T, 1, 1, C)
    cam = jax.nn.relu(jnp.sum(weights * fmap, axis=-1))  # (T, h, w)
    axes = (1, 2) if normalize == "frame" else (0, 1, 2)
    peak = jnp.max(cam, axis=axes, keepdims=True)
    return jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0)


def gradcam(
    model: nnx.Module,
    frames: jax.Array,
    landmarks: jax.Array,
    class_index: int,
    *,
    layer: str = "refined",
    normalize: str = "frame",
) -> jax.Array:
    """Grad-CAM heatmaps ``(T, h, w)`` in [0, 1] for one clip.

    frames ``(T, H, W, 3)`` normalised as the model expects, landmarks ``(T, 68, 2)``; ``layer`` names a
    map of ``model.features`` (MambaFER: "backbone", "cbam" after the attention stages, or "refined" after
    the facial enhancer, the three panels of paper 1's Fig. 2); ``normalize`` "frame" (each frame's peak
    is 1) or "clip" (one scale for the clip, so the temporal evolution of intensity is visible).
    """
    if normalize not in ("frame", "clip"):
        raise ValueError(f"normalize must be 'frame' or 'clip', got {normalize!r}")
    if frames.ndim != 4 or landmarks.ndim != 3:
        raise ValueError(
            f"expected frames (T, H, W, 3) and landmarks (T, 68, 2), got {frames.shape}, {landmarks.shape}"
        )
    graphdef, state = nnx.split(model)
    return _gradcam(
        graphdef, state, jnp.asarray(frames), jnp.asarray(landmarks), jnp.int32(class_index), layer, normalize
    )
