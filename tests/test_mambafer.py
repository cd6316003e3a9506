"""Tests of MambaFER's structure (abstract shapes, no compile) and the landmark mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import attention
from fer_jax.models.mambafer import MambaFER

TINY = dict(backbone_width=0.25, backbone_depth=0.35, d_model=32, mhsa_heads=4, mlp_dims=(16,))


def _abstract(**kw):
    return nnx.eval_shape(lambda: MambaFER(**{**TINY, **kw}, rngs=nnx.Rngs(0)))


def _paths(model):
    return {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_table1_shapes_abstract():
    m = _abstract()
    f = jax.ShapeDtypeStruct((2, 4, 48, 48, 3), jnp.float32)
    lm = jax.ShapeDtypeStruct((2, 4, 68, 2), jnp.float32)
    maps = nnx.eval_shape(lambda mod, a, b: mod.features(a, b), m, f, lm)
    c = m.num_features
    assert maps["backbone"].shape == (8, 2, 2, c) and maps["cbam"].shape == (8, 2, 2, c)
    out = nnx.eval_shape(lambda mod, a, b: mod(a, b), m, f, lm)
    assert out["logits"].shape == (2, 7) and out["logits"].dtype == jnp.float32


@pytest.mark.parametrize(
    "switch,prefix",
    [
        ({"use_cbam": False, "use_enhancer": False}, "cbam/"),
        ({"use_region_attention": False}, "cbam/region/"),
        ({"use_spatial_attention": False}, "cbam/spatial/"),
        ({"use_enhancer": False}, "cbam/enhancer/"),
        ({"use_mhsa": False}, "mhsa/"),
        ({"num_ssm_blocks": 0}, "ssm/"),
        ({"num_ssm_blocks": 1}, "ssm/1/"),
    ],
)
def test_ablation_switch_removes_its_parameters(switch, prefix):
    full, ablated = _paths(_abstract()), _paths(_abstract(**switch))
    removed = full - ablated
    assert removed and all(p.startswith(prefix) for p in removed)
    assert ablated <= full


def test_bidirectional_adds_backward_branch():
    uni, bi = _paths(_abstract()), _paths(_abstract(bidirectional=True))
    assert any("_b" in p for p in bi - uni)


def test_landmark_mask_peaks_at_landmarks():
    lm = np.zeros((1, 68, 2), np.float32)
    lm[0, :, 0], lm[0, :, 1] = (2 + 0.5) / 8, (5 + 0.5) / 8  # all at the centre of cell (row 5, col 2)
    mask = np.asarray(attention.landmark_mask(jnp.asarray(lm), 8, 8))
    assert np.unravel_index(mask.argmax(), mask.shape) == (0, 5, 2)
    assert mask[0, 5, 2] == pytest.approx(1.0) and mask[0, 0, 7] < 1e-3


def test_missing_landmarks_use_template():
    lm = jnp.zeros((2, 68, 2)).at[1].set(0.3)
    out = np.asarray(attention.fill_missing_landmarks(lm))
    np.testing.assert_array_equal(out[0], attention.CANONICAL_LANDMARKS)
    np.testing.assert_allclose(out[1], 0.3, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.usefixtures("fast_compile")  # non-zero, equal, different: no assertion near float32 bits
def test_gradients_reach_every_parameter_and_eval_is_deterministic():
    model = MambaFER(**TINY, scan_method="sequential", rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    frames = jnp.asarray(rng.normal(size=(2, 4, 48, 48, 3)), jnp.float32)
    lms = jnp.asarray(attention.CANONICAL_LANDMARKS + rng.normal(scale=0.01, size=(2, 4, 68, 2)), jnp.float32)

    @nnx.jit
    def grads(m, f, lm):
        return nnx.grad(lambda mod: jnp.sum(mod(f, lm)["logits"] ** 2))(m)

    g = grads(model, frames, lms)
    zero = [p for p, v in nnx.to_flat_state(g) if not np.any(np.asarray(v[...]) != 0)]
    assert not zero, f"no gradient reaches {zero}"

    fwd = nnx.jit(lambda m, f, lm: m(f, lm)["logits"])
    model.eval()
    a, b = fwd(model, frames, lms), fwd(model, frames, lms)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.train()
    c, d = fwd(model, frames, lms), fwd(model, frames, lms)
    assert not np.allclose(np.asarray(c), np.asarray(d))  # dropout draws differ in train mode
