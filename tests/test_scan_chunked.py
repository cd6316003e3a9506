"""The ``"state_passing"`` selective scan (chunks scanned at once, states passed, a dense correction).

Reference: the ``"sequential"`` method (itself pinned to a NumPy loop in tests/test_ssm.py). Outputs,
last states and the gradients of every input agree within 1e-5 (float32) at lengths that are and are
not multiples of the chunk, in both directions, with an initial state, and where the decays underflow
(very negative A, large delta); a Mamba layer runs with it and matches the sequential layer.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import ssm

TOL = dict(rtol=1e-5, atol=1e-5)
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def _inputs(
    seed: int, batch: int, length: int, d: int, n: int, a_scale: float = 1.0, delta_shift: float = -1.0
):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return (
        rng.standard_normal((batch, length, d)).astype(f32),  # u
        (rng.standard_normal((batch, length, d)) + delta_shift).astype(f32),  # delta (before softplus)
        (-np.exp(rng.standard_normal((d, n))) * a_scale).astype(f32),  # A
        rng.standard_normal((batch, length, n)).astype(f32),  # B
        rng.standard_normal((batch, length, n)).astype(f32),  # C
        rng.standard_normal((d,)).astype(f32),  # D
        rng.standard_normal((batch, length, d)).astype(f32),  # z
        (0.1 * rng.standard_normal((d,))).astype(f32),  # delta_bias
        rng.standard_normal((batch, d, n)).astype(f32),  # initial_state
    )


@functools.partial(jax.jit, static_argnames=("method", "reverse", "chunk_size"))
def _run(*args, method, reverse, chunk_size):
    """One compile per case: ((loss, (y, last)), gradients of all nine inputs)."""

    def loss(*a):
        y, last = ssm.selective_scan_with_state(*a[:8], True, reverse, method, chunk_size, a[8])
        # weights make every output position and state entry count differently
        w = jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
        return jnp.sum(w * y) + 0.5 * jnp.sum(jnp.sin(last)), (y, last)

    return jax.value_and_grad(loss, argnums=tuple(range(9)), has_aux=True)(*args)


def _assert_agree(args, reverse: bool, chunk_size: int, tol=TOL):
    (v_ref, (y_ref, last_ref)), g_ref = _run(
        *args, method="sequential", reverse=reverse, chunk_size=chunk_size
    )
    (v, (y, last)), g = _run(*args, method="state_passing", reverse=reverse, chunk_size=chunk_size)
    chex.assert_shape(y, args[0].shape)
    chex.assert_shape(last, args[8].shape)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), **tol, err_msg="y")
    np.testing.assert_allclose(np.asarray(last), np.asarray(last_ref), **tol, err_msg="last state")
    np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-5)
    for name, a, b in zip(GRAD_NAMES, g, g_ref, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert np.all(np.isfinite(a)), name
        assert np.abs(b).max() > 0, name  # every input matters in these problems
        # scaled by the largest entry: the long sums (A, D, delta_bias) reach O(100)
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a / scale, b / scale, **tol, err_msg=f"d/d{name}")


@pytest.mark.parametrize(
    "length, chunk_size, reverse",
    [
        (64, 16, False),  # a multiple of the chunk
        (61, 16, False),  # not a multiple: padded last chunk
        (61, 16, True),  # reverse scan, padded
        (5, 16, False),  # shorter than one chunk
        (37, 1, True),  # one token per chunk
        (300, 8, False),  # 38 chunks: the state crosses 37 boundaries
    ],
)
def test_outputs_states_and_gradients_match_sequential(length, chunk_size, reverse):
    _assert_agree(_inputs(0, 2, length, 6, 4), reverse, chunk_size)


@pytest.mark.parametrize("reverse", [False, True])
def test_stable_when_decays_underflow(reverse):
    # A down to about -300 and softplus(delta) up to about 40: exp(delta A) underflows to 0 and the
    # chunk's cumulative log-decay reaches -1e5; the method must stay finite and equal the loop
    args = _inputs(2, 2, 61, 6, 4, a_scale=60.0, delta_shift=8.0)  # shapes of the cases above
    a = np.asarray(args[2])
    assert a.min() < -200
    assert np.exp(np.log1p(np.exp(np.asarray(args[1]) + 0.3))).max() > 30
    _assert_agree(args, reverse, 16)


def test_mixed_small_and_huge_decays_keep_the_slow_channels_exact():
    # per channel some state entries forget at once (A = -1e3) while others barely decay (A = -1e-3):
    # the slow entries must carry across chunk boundaries unchanged by the fast ones
    args = list(_inputs(3, 2, 61, 6, 4))
    args[2] = np.array([[-1e3, -1e-3, -1.0, -1e2]] * 6, np.float32)
    _assert_agree(tuple(args), False, 16)


def test_state_passing_is_a_listed_method_and_chunk_size_is_checked():
    assert "state_passing" in ssm.METHODS
    assert ssm.resolve_method("state_passing") == "state_passing"
    args = _inputs(0, 1, 4, 2, 2)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        ssm.selective_scan(*args[:5], method="state_passing", chunk_size=0)


def test_mamba_layer_runs_with_state_passing():
    # MambaFER's block (pre-norm residual Mamba layer, unidirectional as MambaFER's default); the
    # backward branch of the bidirectional one is the reverse scan tested above. Same seed -> same weights
    def layer(method):
        return ssm.MambaLayer(16, d_state=4, scan_method=method, chunk_size=8, rngs=nnx.Rngs(0))

    x = jax.random.normal(jax.random.PRNGKey(1), (2, 21, 16))
    outs, grads = {}, {}
    for method in ("sequential", "state_passing"):
        model = layer(method)
        graphdef, params = nnx.split(model)

        def loss(p, x, graphdef=graphdef):
            y = nnx.merge(graphdef, p)(x)
            return jnp.sum(jnp.tanh(y)), y

        grads[method], outs[method] = jax.jit(jax.grad(loss, has_aux=True))(params, x)
    chex.assert_shape(outs["state_passing"], x.shape)
    np.testing.assert_allclose(np.asarray(outs["state_passing"]), np.asarray(outs["sequential"]), **TOL)
    flat_ref = jax.tree.leaves(grads["sequential"])
    flat = jax.tree.leaves(grads["state_passing"])
    assert len(flat) == len(flat_ref) > 0
    for a, b in zip(flat, flat_ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
