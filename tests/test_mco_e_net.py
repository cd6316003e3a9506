"""MCO-E Net end to end at tiny size: output contract, modality switch, orthogonal aux loss, bad configs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import see
from fer_jax.models import hce_moe, mco_e_net, registry
from tests.test_see_configs import shrink


def _config(**model):
    c = shrink(see.get_config())
    c.model.moe.num_experts = 4
    c.model.update(model)
    return c


def _run(model, inputs):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(**x))(state, inputs)


def test_forward_output_contract():
    config = _config(orthogonal_weight=0.5)
    assert mco_e_net.input_spec(config) == {
        "rgb": ((2, 32, 32, 3), np.float32),
        "event": ((2, 32, 32, 3), np.float32),
    }
    model = registry.build(config, rngs=nnx.Rngs(0))
    model.eval()
    rng = np.random.default_rng(0)
    inputs = {
        k: rng.normal(size=v.shape).astype(np.float32) for k, v in registry.dummy_inputs(config, 3).items()
    }
    out = _run(model, inputs)
    chex.assert_shape(out["logits"], (3, 7))
    chex.assert_tree_all_finite(out["logits"])
    w = np.asarray(out["stats"]["expert_weights"])
    chex.assert_shape(w, (3, 4))
    assert ((w > 0).sum(-1) == 2).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out["stats"]["router_probs"]).sum(-1), 1.0, rtol=1e-5)
    chex.assert_shape(out["stats"]["mcib_gate"], (3,))
    # aux = lambda * eq. 16 on the router's last kernel, recomputed here in numpy
    k = np.asarray(model.head.router.fc2.kernel[...])
    expected = 0.5 * np.mean((k.T @ k - np.eye(4)) ** 2)
    np.testing.assert_allclose(float(out["aux_loss"]), expected, rtol=1e-5)
    assert expected > 0


@pytest.mark.slow
def test_single_modality_ignores_the_other_input_and_aux_is_zero_without_moe():
    config = _config(modalities="rgb", head="fc")
    model = registry.build(config, rngs=nnx.Rngs(0))
    model.eval()
    assert set(model.backbones.keys()) == {"rgb"} and model.mcib is None
    rng = np.random.default_rng(1)
    rgb = rng.normal(size=(2, 2, 32, 32, 3)).astype(np.float32)
    ev = rng.normal(size=(2, 2, 32, 32, 3)).astype(np.float32)
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda s, r, e: nnx.merge(graphdef, s)(rgb=r, event=e))
    a, b, c = f(state, rgb, ev), f(state, rgb, 0 * ev), f(state, 2 * rgb, ev)
    np.testing.assert_array_equal(a["logits"], b["logits"])
    assert np.abs(np.asarray(a["logits"] - c["logits"])).max() > 1e-6
    assert float(a["aux_loss"]) == 0.0


def test_orthogonal_loss_is_the_router_term():
    moe = hce_moe.HCEMoE(8, 7, num_experts=4, router_hidden=8, deep_depth=1, focal_hidden=8, rngs=nnx.Rngs(0))
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 4)))
    moe.router.fc2.kernel[...] = jnp.asarray(q, jnp.float32)
    assert float(moe.orthogonal_loss()) < 1e-12


@pytest.mark.parametrize(
    "field,value",
    [
        ("modalities", "rgb+depth"),
        ("tokenization", "patch"),
        ("fusion", "concat"),
        ("head", "svm"),
        ("neck", "pool"),
    ],
)
def test_bad_model_fields_raise(field, value):
    with pytest.raises(ValueError):
        nnx.eval_shape(lambda: registry.build(_config(**{field: value}), rngs=nnx.Rngs(0)))
