"""Grad-CAM on a toy model whose logit depends on one known region of the map."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.interpret.gradcam import gradcam


class Toy(nnx.Module):
    """Feature map = the frames themselves; class 1's logit sums the 2x2 block at rows 1-2, cols 3-4."""

    def __init__(self):
        self.scale = nnx.Param(jnp.ones(()))

    def features(self, frames, landmarks):
        b, t = frames.shape[:2]
        return {"backbone": frames.reshape(b * t, *frames.shape[2:]) * self.scale[...]}

    def classify_from(self, layer, fmap, landmarks):
        b, t = landmarks.shape[:2]
        region = jnp.sum(fmap[:, 1:3, 3:5, :], axis=(1, 2, 3)).reshape(b, t).sum(1)
        other = jnp.sum(fmap, axis=(1, 2, 3)).reshape(b, t).sum(1) * 0.0
        return jnp.stack([other, region], axis=-1)


def test_gradcam_highlights_the_region_the_logit_reads():
    frames = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, size=(3, 6, 6, 2)), jnp.float32)
    cam = np.asarray(gradcam(Toy(), frames, jnp.zeros((3, 68, 2)), 1, layer="backbone"))
    assert cam.shape == (3, 6, 6)
    assert cam.min() >= 0 and np.allclose(cam.max(axis=(1, 2)), 1.0)
    inside = np.zeros((6, 6), bool)
    inside[1:3, 3:5] = True
    # Grad-CAM weights are spatially averaged, so the heat is the channel sum of the map; the region's
    # gradient is the only non-zero one -> the weighted map is positive everywhere, but for class 0 all zero
    assert np.all(np.asarray(gradcam(Toy(), frames, jnp.zeros((3, 68, 2)), 0, layer="backbone")) == 0)
    bright = frames.at[:, 1:3, 3:5, :].set(5.0)
    cam = np.asarray(gradcam(Toy(), bright, jnp.zeros((3, 68, 2)), 1, layer="backbone"))
    assert cam[:, inside].min() > cam[:, ~inside].max()


def test_gradcam_rejects_bad_options():
    with pytest.raises(ValueError):
        gradcam(Toy(), jnp.ones((2, 4, 4, 1)), jnp.zeros((2, 68, 2)), 0, layer="backbone", normalize="max")
    with pytest.raises(ValueError):
        gradcam(Toy(), jnp.ones((4, 4, 1)), jnp.zeros((2, 68, 2)), 0, layer="backbone")


def test_gradcam_strip_and_au_plot_write_pngs(tmp_path):
    from fer_jax.interpret.au import AU_NAMES
    from fer_jax.interpret.figures import save_au_plot, save_gradcam_strip

    frames = np.zeros((3, 16, 16, 3), np.uint8)
    p = save_gradcam_strip(
        frames, np.random.default_rng(0).uniform(size=(3, 4, 4)), tmp_path / "s.png", title="x"
    )
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    q = save_au_plot(np.zeros((3, len(AU_NAMES))), AU_NAMES, tmp_path / "au.png")
    assert q.stat().st_size > 0
    with pytest.raises(ValueError):
        save_gradcam_strip(frames, np.zeros((2, 4, 4)), tmp_path / "bad.png")
