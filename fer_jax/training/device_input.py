"""Input normalisation inside the jitted steps: uint8 frames cross to the device (a quarter of float32's
bytes) and become the model's float32 inputs there, with the numbers of ``fer_jax.data.normalize``.

``train.normalize_on_device`` (default True) decides where normalisation happens; the pipeline
(``fer_jax.data.pipeline``) then leaves ``frames`` / ``rgb`` as uint8 and ``event`` in its stored dtype
(uint8 JPEG event frames; float16 voxel grids, float32 once augmentation warped them). The step applies,
by key::

    frames (B, T, S, S, 3) uint8 -> ImageNet mean / std        (DFEW faces)
    rgb    (B, m, S, S, 3) uint8 -> SEE frame statistics       (SEE / DSEE)
    event  (B, ., S, S, C) uint8 -> /255, SEE event statistics  (or the manifest's, when it has them)
    event  float                 -> (v - mean) / std with the manifest's statistics (identity without)

Float ``frames`` / ``rgb`` pass through unchanged: they were normalised on the host (the old path, or a
caller that prepared its own inputs). Every other key is left alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from fer_jax.data import normalize as host


@dataclasses.dataclass(frozen=True)
class DeviceNormalize:
    """``batch -> batch`` with the model inputs normalised (jnp; traced inside the jitted steps).

    ``event_mean`` / ``event_std``: the manifest's event statistics (``normalization.event``), None when
    it has none (as ``fer_jax.data.pipeline`` reads them).
    """

    event_mean: float | None = None
    event_std: float | None = None

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        if "frames" in out and _is_uint8(out["frames"]):
            out["frames"] = _affine_255(out["frames"], host.IMAGENET_MEAN, host.IMAGENET_STD)
        if "rgb" in out and _is_uint8(out["rgb"]):
            out["rgb"] = _affine_255(out["rgb"], host.SEE_FRAME_MEAN, host.SEE_FRAME_STD)
        if "event" in out:
            out["event"] = self._events(out["event"])
        return out

    def _events(self, x):
        if _is_uint8(x):
            m = host.SEE_EVENT_MEAN if self.event_mean is None else self.event_mean
            s = host.SEE_EVENT_STD if self.event_std is None else self.event_std
            return _affine_255(x, m, s)
        m = 0.0 if self.event_mean is None else self.event_mean
        s = 1.0 if self.event_std is None else self.event_std
        # the same operation order as the host (fer_jax.data.normalize.see_events): equal to the last bit
        return (jnp.asarray(x).astype(jnp.float32) - m) / s


def _is_uint8(x) -> bool:
    return jnp.dtype(x.dtype) == jnp.uint8


def _affine_255(x, mean, std):
    """``((x / 255) - mean) / std`` in float32, as ``fer_jax.data.normalize`` computes it on the host."""
    return ((jnp.asarray(x).astype(jnp.float32) / 255.0) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(
        std, jnp.float32
    )


def on_device(config) -> bool:
    """``train.normalize_on_device`` (True when absent: runs written before the switch read it too)."""
    return bool(config.train.get("normalize_on_device", True))


def from_manifest(config, manifest: Mapping[str, Any]) -> DeviceNormalize | None:
    """The steps' normaliser for ``config``'s data, or None when the host normalises
    (``train.normalize_on_device`` False)."""
    if not on_device(config):
        return None
    norm = (manifest.get("normalization") or {}).get("event") or {}
    return DeviceNormalize(event_mean=norm.get("mean"), event_std=norm.get("std"))
