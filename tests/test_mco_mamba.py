"""MCO-Mamba: MJOS (eq. 5, every Table-7 interaction set) and MCIB (eq. 6-9)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import mco_mamba

D, N = 8, 4
X_RGB = jax.random.normal(jax.random.key(0), (2, 5, D))
X_EV = jax.random.normal(jax.random.key(1), (2, 5, D))


def _block(**kw):
    args = dict(d_state=N, residual=False, scan_method="associative", rngs=nnx.Rngs(0))
    args.update(kw)
    return mco_mamba.MCOMamba(D, **args)


def _zero_mjos(m):
    for proj in m.mjos.values():
        proj.kernel[...] = jnp.zeros_like(proj.kernel[...])
        if proj.bias is not None:
            proj.bias[...] = jnp.zeros_like(proj.bias[...])


@pytest.mark.parametrize("params", ["ABCD"])
def test_zero_mjos_weights_equal_two_independent_bimamba_blocks(params):
    m = _block(params=params)
    _zero_mjos(m)
    y_rgb, y_ev = m(X_RGB, X_EV)
    chex.assert_shape((y_rgb, y_ev), (2, 5, D))
    np.testing.assert_allclose(y_rgb, m.blocks["rgb"](X_RGB), atol=1e-5)
    np.testing.assert_allclose(y_ev, m.blocks["event"](X_EV), atol=1e-5)
    # and the fusion really couples the modalities once its weights are not zero
    m2 = _block(params=params)
    assert np.abs(np.asarray(m2(X_RGB, X_EV)[0] - m2.blocks["rgb"](X_RGB))).max() > 1e-4


def _touched(model) -> dict[str, set[str]]:
    """Block parameters that receive gradient, keyed "<output>_from_<block>" (x_proj split by column).

    Both outputs' gradients come from one compiled function: compiling is what costs here.
    """
    graphdef, state = nnx.split(model)

    def loss(state, out):
        return jnp.sum(nnx.merge(graphdef, state)(X_RGB, X_EV)[out] ** 2)

    g_rgb, g_ev = jax.jit(lambda s: (jax.grad(loss)(s, 0), jax.grad(loss)(s, 1)))(state)
    r = model.dt_rank
    result = {}
    for key, g in (
        ("rgb_from_event", g_rgb.blocks["event"]),
        ("event_from_rgb", g_ev.blocks["rgb"]),
        ("event_from_event", g_ev.blocks["event"]),
        ("rgb_from_rgb", g_rgb.blocks["rgb"]),
    ):
        names = set()
        for name in ("in_proj", "conv1d", "conv1d_b", "dt_proj", "dt_proj_b", "A_log", "A_b_log", "D", "D_b"):
            if any(float(jnp.abs(leaf).sum()) > 0 for leaf in jax.tree.leaves(g[name])):
                names.add(name)
        for name in ("x_proj", "x_proj_b"):
            k = np.asarray(jax.tree.leaves(g[name])[0])
            for part, cols in (("dt", slice(0, r)), ("B", slice(r, r + N)), ("C", slice(r + N, r + 2 * N))):
                if np.abs(k[:, cols]).sum() > 0:
                    names.add(f"{name}.{part}")
        result[key] = names
    return result


TOKENS = {"in_proj", "conv1d", "conv1d_b"}
FUSED = {
    "A": {"A_log", "A_b_log"},
    "B": TOKENS | {"x_proj.B", "x_proj_b.B"},
    "C": TOKENS | {"x_proj.C", "x_proj_b.C"},
    "D": {"D", "D_b"},
}


@pytest.mark.parametrize(
    "params", ["BC"] + [pytest.param(p, marks=pytest.mark.slow) for p in ("AB", "AC", "AD", "BD", "CD")]
)
def test_fuse_rows_touch_exactly_the_named_parameters(params):
    m = _block(mode="fuse", params=params)
    expected_keys = {f"{p}_{d}_{mod}" for p in params for d in "fb" for mod in ("rgb", "event")}
    assert set(m.mjos.keys()) == expected_keys
    # the RGB output sees the event block only through the fused parameters, and vice versa
    touched = _touched(m)
    assert touched["rgb_from_event"] == set().union(*(FUSED[p] for p in params))
    assert touched["event_from_rgb"] == set().union(*(FUSED[p] for p in params))


SHARED = {
    "A": {"A_log", "A_b_log"},
    "B": {"x_proj.B", "x_proj_b.B"},
    "C": {"x_proj.C", "x_proj_b.C"},
    "D": {"D", "D_b"},
}


@pytest.mark.parametrize("p", [pytest.param(p, marks=pytest.mark.slow) for p in "ABCD"])
def test_share_rows_use_the_rgb_parameter_in_both_scans(p):
    m = _block(mode="share", params=p)
    assert len(m.mjos) == 0
    touched = _touched(m)
    assert touched["rgb_from_event"] == set()  # RGB scan is a plain BiMamba
    assert touched["event_from_rgb"] == SHARED[p]  # event scan borrows exactly the shared parameter
    assert not (touched["event_from_event"] & SHARED[p])  # its own copy is unused


@pytest.mark.slow
def test_exchange_all_swaps_every_ssm_parameter_but_not_dt():
    m = _block(mode="exchange", params="ABCD")
    touched = _touched(m)
    assert touched["rgb_from_event"] == set().union(*FUSED.values())
    own = touched["rgb_from_rgb"]
    assert not (own & {"A_log", "A_b_log", "D", "D_b", "x_proj.B", "x_proj.C"})
    assert {"dt_proj", "x_proj.dt", "in_proj"} <= own


def test_official_variant_fuses_x_dbl_into_both_modalities():
    m = _block(source="x_dbl", tied=True, bias=False)
    assert set(m.mjos.keys()) == {"B_f_shared", "B_b_shared", "C_f_shared", "C_b_shared"}
    assert m.mjos["B_f_shared"].kernel.shape == (2 * (m.dt_rank + 2 * N), N)
    assert m.mjos["B_f_shared"].bias is None
    chex.assert_shape(m(X_RGB, X_EV), [(2, 5, D)] * 2)


def test_single_modality_is_one_bimamba():
    m = _block(modalities=("event",), residual=True)
    (y,) = m(X_EV)
    np.testing.assert_allclose(y, X_EV + m.blocks["event"](X_EV), atol=1e-5)
    with pytest.raises(ValueError):
        m(X_RGB, X_EV)


@pytest.mark.parametrize(
    "kw",
    [
        dict(mode="swap"),
        dict(params="BE"),
        dict(modalities=("rgb", "depth")),
        dict(source="x_dbl", params="AB"),
    ],
)
def test_bad_mjos_settings_raise(kw):
    with pytest.raises(ValueError):
        _block(**kw)


def test_mcib_gate_on_known_inputs():
    a = jnp.array([[[1.0, 2.0], [0.5, -1.0]]])
    b = jnp.array([[[0.5, 0.25], [2.0, 3.0]]])
    # per token: 1*0.5 + 2*0.25 = 1.0 ; 0.5*2 - 1*3 = -2.0
    expected = 1 / (1 + np.exp(-np.array([1.0, -2.0])))
    np.testing.assert_allclose(np.asarray(mco_mamba.mcib_gate(a, b))[0, :, 0], expected, rtol=1e-6)


@pytest.mark.parametrize("gate_on,residual", [("input", False), ("projected", True)])
def test_mcib_mixes_cross_attentions_with_the_gate(gate_on, residual):
    blk = mco_mamba.MCIB(D, num_heads=2, gate_on=gate_on, residual=residual, rngs=nnx.Rngs(0))
    h, alpha = blk(X_RGB, X_EV)
    chex.assert_shape(h, (2, 5, D))
    chex.assert_shape(alpha, (2, 5, 1))
    p_r, p_e = blk.proj_rgb(X_RGB), blk.proj_event(X_EV)
    a, b = (X_RGB, X_EV) if gate_on == "input" else (p_r, p_e)
    gate = 1 / (1 + np.exp(-np.sum(np.asarray(a) * np.asarray(b), -1, keepdims=True)))
    np.testing.assert_allclose(alpha, gate, rtol=1e-5)
    rgb_q = np.asarray(blk.attn(p_r, p_e, p_e))  # RGB queries retrieve event details
    ev_q = np.asarray(blk.attn(p_e, p_r, p_r))
    expected = gate * rgb_q + (1 - gate) * ev_q + ((np.asarray(p_r) + np.asarray(p_e)) / 2 if residual else 0)
    np.testing.assert_allclose(h, expected, rtol=1e-5, atol=1e-5)
