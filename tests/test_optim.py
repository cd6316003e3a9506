"""Schedules, weight-decay mask, clipping and accumulation of fer_jax.training.optim / ema."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import dfew, see
from configs.common import base_config
from fer_jax.models import registry
from fer_jax.models.ssm import SSMParam
from fer_jax.training import ema, optim
from tests.test_see_configs import shrink


def _torch_onecycle(step, total, max_lr, pct_start=0.3, div=25.0, final_div=1e4):
    """PyTorch OneCycleLR (cos, two phases) re-derived from its documented formula."""
    initial = max_lr / div
    minimum = initial / final_div
    phases = [(float(pct_start * total) - 1, initial, max_lr), (float(total - 1), max_lr, minimum)]
    start = 0.0
    for end, lo, hi in phases:
        if step <= end or end == phases[-1][0]:
            pct = (step - start) / (end - start)
            return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
        start = end
    raise AssertionError


def test_onecycle_matches_pytorch_formula():
    total, lr = 100, 3e-4
    sched = optim.onecycle_schedule(total, lr)
    got = np.array([float(sched(s)) for s in range(total)])
    want = np.array([_torch_onecycle(s, total, lr) for s in range(total)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * lr)  # float32 cancellation near 0
    assert got[0] == pytest.approx(lr / 25)
    assert got.max() == pytest.approx(lr) and int(got.argmax()) == 29
    assert got[-1] == pytest.approx(lr / 25 / 1e4, rel=1e-3)


def test_step_schedule_decays_per_epoch():
    c = base_config()
    c.optim.schedule, c.optim.lr, c.optim.step_gamma = "step", 1.0, 0.5
    sched = optim.make_schedule(c, total_steps=30, steps_per_epoch=10)
    assert [float(sched(s)) for s in (0, 9, 10, 19, 20)] == pytest.approx([1, 1, 0.5, 0.5, 0.25])


def test_unknown_schedule_raises():
    c = base_config()
    c.optim.schedule = "linear"
    with pytest.raises(ValueError, match="unknown optim.schedule"):
        optim.make_schedule(c, total_steps=10, steps_per_epoch=5)


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(3, 4, rngs=rngs)
        self.layer_norm = nnx.LayerNorm(4, rngs=rngs)
        self.A_log = SSMParam(jnp.ones((4, 2)))
        self.mix = nnx.Param(jnp.ones((2, 2)))
        self.blocks = nnx.List([nnx.Linear(2, 2, rngs=rngs)])  # integer path entries


def test_weight_decay_only_on_matrices_not_norms_biases_or_ssm():
    """Zero gradients: AdamW moves exactly the decayed parameters, by lr * wd * value."""
    c = base_config()
    c.optim.schedule, c.optim.lr, c.optim.weight_decay, c.optim.grad_clip = "constant", 0.1, 0.5, 0.0
    params = nnx.state(_Net(nnx.Rngs(0)), nnx.Param)
    tx, _ = optim.make_optimizer(c, params, total_steps=10, steps_per_epoch=5)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    upd = nnx.to_pure_dict(updates)
    p = nnx.to_pure_dict(params)
    np.testing.assert_allclose(upd["dense"]["kernel"], -0.1 * 0.5 * p["dense"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(upd["mix"], -0.05 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(upd["blocks"][0]["kernel"], -0.05 * p["blocks"][0]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(upd["blocks"][0]["bias"], 0.0)
    for leaf in (upd["dense"]["bias"], upd["layer_norm"]["scale"], upd["layer_norm"]["bias"], upd["A_log"]):
        np.testing.assert_array_equal(leaf, 0.0)


def _tiny_mambafer():
    c = dfew.get_config()
    with c.unlocked():
        c.data.num_frames, c.data.image_size = 4, 32
        c.model.backbone_width, c.model.backbone_depth = 0.25, 0.35
        c.model.d_model, c.model.mhsa_heads, c.model.mlp_dims = 16, 2, (8,)
    return c


def _tiny_mco_e_net():
    c = shrink(see.get_config())
    c.model.moe.num_experts = 4
    return c


@pytest.mark.parametrize("get_config", [_tiny_mambafer, _tiny_mco_e_net], ids=["mambafer", "mco_e_net"])
def test_decay_mask_on_real_models(get_config):
    """The name rule decays exactly the >= 2-d weights that are no SSM parameter (``SSMParam``, the
    class the models mark A_log / D with) and no norm parameter; every SSM parameter is caught by name."""
    model = nnx.eval_shape(lambda: registry.build(get_config(), rngs=nnx.Rngs(0)))
    params = nnx.state(model, nnx.Param)
    mask = optim.decay_mask(params)
    leaves = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
    got = jax.tree.leaves(mask)
    assert len(got) == len(leaves)
    ssm_leaves = 0
    for (path, var), decayed in zip(leaves, got):
        names = [str(getattr(k, "key", k)) for k in path]
        ssm_leaves += isinstance(var, SSMParam)
        want = (
            not isinstance(var, SSMParam)
            and var.get_value().ndim >= 2
            and names[-1] not in ("bias", "scale")
            and not any("norm" in n.lower() for n in names[:-1])
        )
        assert decayed == want, names
    assert ssm_leaves >= 4  # the models do have A_log / D (both directions in MCO-E Net)
    assert 0 < sum(got) < len(got)


def test_decay_mask_on_a_plain_dict():
    """The rule reads names and ranks only, so a restored plain-dict tree gets the same mask."""
    params = {
        "conv": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)},
        "A_b_log": jnp.ones((2, 2)),
        "layer_norm": {"w": jnp.ones((2, 2))},
        "blocks": [{"kernel": jnp.ones((2, 2))}],
    }
    assert optim.decay_mask(params) == {
        "conv": {"kernel": True, "bias": False},
        "A_b_log": False,
        "layer_norm": {"w": False},
        "blocks": [{"kernel": True}],
    }


def test_clipping_bounds_the_update_norm():
    c = base_config()
    c.optim.name, c.optim.schedule, c.optim.lr, c.optim.grad_clip = "sgd", "constant", 1.0, 0.5
    c.optim.momentum = 0.0
    params = {"w": jnp.zeros(4)}
    tx, _ = optim.make_optimizer(c, params, total_steps=1, steps_per_epoch=1)
    updates, _ = tx.update({"w": jnp.full(4, 10.0)}, tx.init(params), params)
    assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-5)


def test_accumulation_equals_one_large_batch():
    """Two accumulated half-batch steps of a linear least-squares model == one full-batch step."""
    c = base_config()
    c.optim.name, c.optim.schedule, c.optim.lr, c.optim.grad_clip = "sgd", "constant", 0.1, 0.0
    c.optim.momentum = 0.0
    x = jax.random.normal(jax.random.key(0), (8, 3))
    y = jax.random.normal(jax.random.key(1), (8,))
    loss = lambda p, xb, yb: jnp.mean((xb @ p["w"] - yb) ** 2)
    p0 = {"w": jnp.ones(3)}

    tx1, _ = optim.make_optimizer(c, p0, total_steps=1, steps_per_epoch=1)
    u, _ = tx1.update(jax.grad(loss)(p0, x, y), tx1.init(p0), p0)
    want = optax.apply_updates(p0, u)

    c.train.grad_accum_steps = 2
    tx2, _ = optim.make_optimizer(c, p0, total_steps=1, steps_per_epoch=1)
    s, p = tx2.init(p0), p0
    for half in (slice(0, 4), slice(4, 8)):
        u, s = tx2.update(jax.grad(loss)(p, x[half], y[half]), s, p)
        p = optax.apply_updates(p, u)
    chex.assert_trees_all_close(p, want, rtol=1e-6)


def test_ema_warmup_and_update():
    assert float(ema.ema_decay_at(0.999, 0)) == pytest.approx(0.1)
    assert float(ema.ema_decay_at(0.999, 10**6)) == pytest.approx(0.999)
    out = ema.ema_update({"a": jnp.array([1.0])}, {"a": jnp.array([3.0])}, 0.75)
    assert float(out["a"][0]) == pytest.approx(1.5)


# PyTorch OneCycleLR(max_lr, total_steps=100, pct_start=0.3), cycle_momentum=True (its default) with AdamW:
# param_groups[0]["betas"][0] before the update of each step (base_momentum 0.85, max_momentum 0.95, cos),
# from PyTorch's documented formula, and the same numbers printed by torch 2.13.0+cpu (torch is not a CI
# dependency).
TORCH_ONECYCLE_BETA1 = {
    0: 0.95,
    1: 0.9497068978577179,
    10: 0.9234204220349895,
    20: 0.8719406467318809,
    29: 0.85,
    30: 0.8500503466729342,
    50: 0.8706107373853763,
    75: 0.9236934331236499,
    98: 0.9499496533270657,
    99: 0.95,
}


def test_onecycle_momentum_matches_pytorch_beta1():
    sched = optim.onecycle_momentum_schedule(100, 0.3)
    for step, want in TORCH_ONECYCLE_BETA1.items():
        assert float(sched(step)) == pytest.approx(want, abs=1e-6), step


def _adamw_config(cycle: bool):
    c = base_config()
    c.optim.name, c.optim.schedule, c.optim.lr, c.optim.grad_clip = "adamw", "onecycle", 1e-3, 0.0
    c.optim.weight_decay = 0.01
    c.optim.cycle_momentum = cycle
    return c


# torch 2.13.0+cpu, float64: AdamW(lr=1e-3, weight_decay=0.01) under OneCycleLR(max_lr=1e-3, total_steps=10,
# pct_start=0.3), a (2, 2) parameter of ones, gradients 1, -2, 0.5, 3 (all entries): an entry after each step.
TORCH_ADAMW_ONECYCLE_W = [0.9999596000004, 1.0002226542476844, 1.000323833201673, 0.9998964207349635]


def test_cycle_momentum_drives_adams_first_moment_and_bias_correction():
    """Each update uses the scheduled beta1 in the moment and in PyTorch's bias correction 1 - b1_t^t."""
    total = 10
    c = _adamw_config(True)
    params = {"w": jnp.ones((2, 2))}
    tx, lr = optim.make_optimizer(c, params, total_steps=total, steps_per_epoch=total)
    b1 = optim.onecycle_momentum_schedule(total, c.optim.pct_start)
    state, p = tx.init(params), params
    grads = [jnp.full((2, 2), g) for g in (1.0, -2.0, 0.5, 3.0)]
    mu = nu = 0.0
    want = np.ones((2, 2))
    for t, g in enumerate(grads, start=1):
        u, state = tx.update({"w": g}, state, p)
        p = optax.apply_updates(p, u)
        beta = float(b1(t - 1))
        gv = float(g[0, 0])
        mu = beta * mu + (1 - beta) * gv
        nu = 0.999 * nu + 0.001 * gv**2
        m_hat, v_hat = mu / (1 - beta**t), nu / (1 - 0.999**t)
        step_lr = float(lr(t - 1))
        want = want - step_lr * (m_hat / (np.sqrt(v_hat) + 1e-8) + 0.01 * want)
        np.testing.assert_allclose(np.asarray(p["w"]), want, rtol=2e-5)
        assert float(p["w"][0, 0]) == pytest.approx(TORCH_ADAMW_ONECYCLE_W[t - 1], abs=5e-7)
    # off: a plain float beta1 of 0.9, a different trajectory after the first step
    tx0, _ = optim.make_optimizer(_adamw_config(False), params, total_steps=total, steps_per_epoch=total)
    s0, p0 = tx0.init(params), params
    for g in grads:
        u, s0 = tx0.update({"w": g}, s0, p0)
        p0 = optax.apply_updates(p0, u)
    moved_off, moved_on = 1.0 - np.asarray(p0["w"]), 1.0 - want
    assert abs(moved_off[0, 0] - moved_on[0, 0]) > 0.05 * abs(moved_on[0, 0])


def test_cycle_momentum_refuses_other_schedules_and_optimizers():
    c = _adamw_config(True)
    c.optim.schedule = "cosine"
    with pytest.raises(ValueError, match="cycle_momentum"):
        optim.make_optimizer(c, {"w": jnp.ones(2)}, total_steps=5, steps_per_epoch=5)


def test_dfew_config_cycles_momentum():
    assert dfew.get_config().optim.cycle_momentum is True
