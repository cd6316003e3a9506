"""HCE-MoE: top-k routing, sparse gradients, cyclic expert types and the orthogonal loss (eq. 10-16)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import hce_moe


def _moe(**kw):
    args = dict(num_experts=4, top_k=2, router_hidden=8, deep_depth=2, focal_hidden=8, rngs=nnx.Rngs(0))
    args.update(kw)
    return hce_moe.HCEMoE(8, 7, **args)


def _jit_call(module, h):
    graphdef, state = nnx.split(module)
    return jax.jit(lambda s, h: nnx.merge(graphdef, s)(h))(state, h)


def test_top_k_weights_keep_the_largest_and_sum_to_one():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=5).astype(np.float32)
    w = np.asarray(hce_moe.top_k_weights(jnp.asarray(probs), 3))
    for p, row in zip(probs, w):
        chosen = set(np.argsort(-p)[:3])
        assert set(np.flatnonzero(row)) == chosen
        np.testing.assert_allclose(row.sum(), 1.0, rtol=1e-6)
        idx = sorted(chosen)
        np.testing.assert_allclose(row[idx], p[idx] / p[idx].sum(), rtol=1e-5)


def test_experts_are_assigned_cyclically_and_output_shapes():
    moe = _moe(num_experts=5, expert_types=("focal", "deep"))
    assert moe.types == ("focal", "deep", "focal", "deep", "focal")
    assert isinstance(moe.experts[1], hce_moe.DeepExpert)
    moe.eval()
    logits, stats = _jit_call(moe, jnp.ones((3, 6, 8)))
    chex.assert_shape(logits, (3, 7))
    chex.assert_shape(stats["expert_weights"], (3, 5))
    chex.assert_shape(stats["router_probs"], (3, 5))
    np.testing.assert_allclose(np.asarray(stats["router_probs"]).sum(-1), 1.0, rtol=1e-5)
    assert ((np.asarray(stats["expert_weights"]) > 0).sum(-1) == 2).all()


def test_gradients_reach_exactly_the_chosen_experts():
    moe = _moe()
    moe.eval()
    h = jax.random.normal(jax.random.key(1), (1, 5, 8))
    _, stats = _jit_call(moe, h)
    chosen = set(np.flatnonzero(np.asarray(stats["expert_weights"][0])))
    assert len(chosen) == 2

    graphdef, params, rest = nnx.split(moe, nnx.Param, ...)

    def loss(params):
        return jnp.sum(nnx.merge(graphdef, params, rest)(h)[0] ** 2)

    grads = jax.jit(jax.grad(loss))(params)  # compiled: cheaper than an eager gradient
    for i in range(4):
        norm = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads.experts[i]))
        assert (norm > 0) == (i in chosen), (i, norm, chosen)
    # the router learns through the renormalised weights of the chosen experts
    assert float(jnp.sum(jnp.abs(grads.router.fc2.kernel[...]))) > 0


def test_logits_are_the_weighted_sum_of_the_chosen_experts():
    moe = _moe(expert_types=("attention", "focal"))
    moe.eval()
    h = jax.random.normal(jax.random.key(2), (2, 5, 8))
    logits, stats = moe(h)
    w = np.asarray(stats["expert_weights"])
    expected = sum(w[:, i : i + 1] * np.asarray(moe.experts[i](h)) for i in range(4))
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-6)


def test_orthogonal_loss_zero_for_orthonormal_columns_positive_otherwise():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 4)))
    assert float(hce_moe.orthogonal_loss(jnp.asarray(q, jnp.float32))) < 1e-12
    w = np.random.default_rng(1).normal(size=(16, 4))
    expected = np.mean((w.T @ w - np.eye(4)) ** 2)
    np.testing.assert_allclose(
        float(hce_moe.orthogonal_loss(jnp.asarray(w, jnp.float32))), expected, rtol=1e-5
    )
    assert expected > 0


@pytest.mark.parametrize("kw", [dict(expert_types=("moe",)), dict(top_k=5), dict(top_k=0)])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        _moe(**kw)
