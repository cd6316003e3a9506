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


class _StandInBackbone(nnx.Module):
    """One strided conv in place of EfficientNetV2-S: the hooks under test come after the backbone, whose
    eager construction alone costs about a minute on two cores."""

    def __init__(self, *, rngs, **_):
        self.num_features = 24
        self.conv = nnx.Conv(3, 24, (3, 3), strides=(8, 8), rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


@pytest.mark.slow  # eager model construction: about 30 s on two busy cores
def test_mambafer_hooks_give_the_three_maps_of_fig2_and_continue_from_each(monkeypatch):
    """backbone -> cbam (attention stages) -> refined (facial enhancer, pooled): classify_from any of them
    gives the model's own logits, and Grad-CAM of the refinement stage is a map per frame."""
    from fer_jax.models import mambafer

    monkeypatch.setattr(mambafer, "efficientnet_v2_s", _StandInBackbone)
    model = mambafer.MambaFER(
        d_model=16, mlp_dims=(8,), num_ssm_blocks=0, use_mhsa=False, cbam_reduction=4, rngs=nnx.Rngs(0),
    )  # fmt: skip
    model.eval()
    rng = np.random.default_rng(0)
    frames = jnp.asarray(rng.normal(size=(1, 2, 32, 32, 3)), jnp.float32)
    lms = jnp.asarray(rng.uniform(0.2, 0.8, size=(1, 2, 68, 2)), jnp.float32)

    @nnx.jit
    def run(m, f, lm):
        maps = m.features(f, lm)
        again = {k: m.classify_from(k, v, lm) for k, v in maps.items()}
        return maps, m(f, lm)["logits"], again, m.cbam.refine(maps["cbam"])

    maps, logits, again, refined = run(model, frames, lms)
    assert tuple(maps) == mambafer.LAYERS == ("backbone", "cbam", "refined")
    for layer in mambafer.LAYERS:
        np.testing.assert_allclose(again[layer], logits, rtol=1e-5, atol=1e-6)
    # the enhancer changes the map (x + SiLU(BN(dwconv x))); the attention changes the backbone's
    assert not np.allclose(maps["refined"], maps["cbam"]) and not np.allclose(maps["cbam"], maps["backbone"])
    np.testing.assert_allclose(refined, maps["refined"], rtol=1e-6)
    cam = np.asarray(gradcam(model, frames[0], lms[0], 0, layer="refined"))
    assert cam.shape == maps["refined"].shape[:3] and 0 <= cam.min() and cam.max() <= 1


def test_clip_figures_draw_no_au_curves_when_au_is_unavailable(tmp_path):
    from fer_jax.interpret.report import clip_figures

    frames = np.random.default_rng(0).uniform(-1, 1, size=(3, 6, 6, 3)).astype(np.float32)
    ex = {0: {"frames": frames, "landmarks": np.zeros((3, 68, 2), np.float32), "label": 1}}
    notes, per_clip = clip_figures(Toy(), ex, {0: 1}, ["a", "b"], tmp_path, "backbone", with_au=False)
    assert notes == ["wrote gradcam_0.png"] and per_clip == {0: {"label": "b", "pred": "b"}}
    assert not (tmp_path / "au_0.png").exists()
    notes, per_clip = clip_figures(Toy(), ex, {0: 1}, ["a", "b"], tmp_path, "backbone")
    assert (tmp_path / "au_0.png").is_file() and "au" in per_clip[0]
