"""Tests of fer_jax.models.ssm: the selective scan against an independent numpy loop, the three methods
against each other (values, reverse, gradients), causality, and the Mamba / BiMamba blocks."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import ssm

METHODS = ssm.METHODS
TOL = dict(rtol=1e-5, atol=1e-5)


def selective_scan_ref_np(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Loop version of mamba_ssm's selective_scan_ref, channels-first, float64.

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l); D, delta_bias: (d,). Written from the formulas
    (delta += bias; softplus; x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t; y_t = <x_t, C_t> + D u_t;
    y *= silu(z)).
    """
    u, delta, A, B, C = (np.asarray(t, np.float64) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + np.asarray(delta_bias, np.float64)[None, :, None]
    if delta_softplus:
        delta = np.logaddexp(0.0, delta)
    b, d, length = u.shape
    x = np.zeros((b, d, A.shape[1]))
    ys = []
    for t in range(length):
        x = np.exp(delta[:, :, t, None] * A) * x + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        ys.append(np.einsum("bdn,bn->bd", x, C[:, :, t]))
    y = np.stack(ys, axis=-1)
    if D is not None:
        y = y + u * np.asarray(D, np.float64)[None, :, None]
    if z is not None:
        z = np.asarray(z, np.float64)
        y = y * z / (1.0 + np.exp(-z))
    return y


def make_inputs(seed, b, length, d, n, delta_scale=0.5):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return dict(
        u=f(b, length, d),
        delta=f(b, length, d) * delta_scale,
        A=-np.exp(f(d, n) * 0.5),
        B=f(b, length, n),
        C=f(b, length, n),
        D=f(d),
        z=f(b, length, d),
        delta_bias=f(d) * 0.5,
    )


def ref_channels_last(inp, use_D, use_z, use_bias, softplus):
    """The numpy reference fed channels-first (transposed) and transposed back."""
    t = lambda a: np.swapaxes(a, 1, 2)  # noqa: E731
    y = selective_scan_ref_np(
        t(inp["u"]),
        t(inp["delta"]),
        inp["A"],
        t(inp["B"]),
        t(inp["C"]),
        D=inp["D"] if use_D else None,
        z=t(inp["z"]) if use_z else None,
        delta_bias=inp["delta_bias"] if use_bias else None,
        delta_softplus=softplus,
    )
    return t(y)


_OPTIONAL = ("D", "z", "delta_bias")


@functools.partial(jax.jit, static_argnames=("method", "use", "softplus", "reverse", "chunk_size"))
def _scan_jit(u, delta, A, B, C, D, z, delta_bias, *, method, use, softplus, reverse, chunk_size):
    # jitted once per configuration: op-by-op dispatch of the associative scan is slow on 2 cores
    opt = {k: (v if k in use else None) for k, v in zip(_OPTIONAL, (D, z, delta_bias), strict=True)}
    return ssm.selective_scan(
        u,
        delta,
        A,
        B,
        C,
        **opt,
        delta_softplus=softplus,
        reverse=reverse,
        method=method,
        chunk_size=chunk_size,
    )


def run(inp, method, use_D=True, use_z=True, use_bias=True, softplus=True, reverse=False, chunk_size=8):
    use = tuple(k for k, on in zip(_OPTIONAL, (use_D, use_z, use_bias), strict=True) if on)
    args = [inp[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    return _scan_jit(*args, method=method, use=use, softplus=softplus, reverse=reverse, chunk_size=chunk_size)


@pytest.mark.parametrize(
    "length,use_D,use_z,use_bias,softplus",
    [
        (33, True, True, True, True),
        (33, False, False, False, False),
        (1, True, True, True, True),
        (7, True, False, True, False),
        (7, False, True, False, True),
    ],
)
def test_methods_match_numpy_reference(length, use_D, use_z, use_bias, softplus):
    inp = make_inputs(length, 2, length, 4, 3)
    want = ref_channels_last(inp, use_D, use_z, use_bias, softplus)
    for method in METHODS:
        # chunk 8 does not divide 7 or 33: exercises the padded last chunk
        got = run(inp, method, use_D, use_z, use_bias, softplus, chunk_size=8)
        chex.assert_shape(got, inp["u"].shape)
        np.testing.assert_allclose(np.asarray(got), want, **TOL, err_msg=method)


def test_methods_agree_at_length_4096():
    inp = make_inputs(1, 1, 4096, 3, 2)
    want = ref_channels_last(inp, True, True, True, True)
    for method in METHODS:
        got = run(inp, method, chunk_size=100)
        np.testing.assert_allclose(np.asarray(got), want, **TOL, err_msg=method)


@pytest.mark.parametrize("method", METHODS)
def test_reverse_equals_flip_scan_flip(method):
    # shapes and options shared with the reference test so the jitted scans are reused, not recompiled
    inp = make_inputs(2, 2, 33, 4, 3)
    flipped = {k: (np.ascontiguousarray(v[:, ::-1]) if v.ndim == 3 else v) for k, v in inp.items()}
    want = np.asarray(run(flipped, "sequential"))[:, ::-1]
    got = run(inp, method, reverse=True)
    np.testing.assert_allclose(np.asarray(got), want, **TOL)


# positional: (u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, method, chunk_size, state)
_scan_with_state_jit = jax.jit(ssm.selective_scan_with_state, static_argnums=(8, 9, 10, 11))


@pytest.mark.parametrize("reverse", [False, True])
def test_initial_and_last_state_compose(reverse):
    # scanning [a, b] in one go == scanning a, then b starting from a's last state (order follows reverse)
    inp = make_inputs(3, 2, 12, 4, 3)
    # equal halves and an explicit zero state keep it to two compiles per method
    first, second = (slice(0, 6), slice(6, 12)) if not reverse else (slice(6, 12), slice(0, 6))
    zeros = jnp.zeros((2, 4, 3), jnp.float32)

    def part(sl, state, method):
        sub = {k: (v[:, sl] if v.ndim == 3 else v) for k, v in inp.items()}
        return _scan_with_state_jit(
            sub["u"], sub["delta"], sub["A"], sub["B"], sub["C"], sub["D"], sub["z"], sub["delta_bias"],
            True, reverse, method, 4, state,
        )  # fmt: skip

    # "associative" is covered through "chunked", which runs it from the carried state in every chunk
    for method in ("sequential", "chunked"):
        y_all, last_all = part(slice(None), zeros, method)
        y1, s1 = part(first, zeros, method)
        y2, s2 = part(second, s1, method)
        chex.assert_shape(s2, (2, 4, 3))
        np.testing.assert_allclose(np.asarray(last_all), np.asarray(s2), **TOL, err_msg=method)
        np.testing.assert_allclose(np.asarray(y_all[:, first]), np.asarray(y1), **TOL)
        np.testing.assert_allclose(np.asarray(y_all[:, second]), np.asarray(y2), **TOL)


GRAD_NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "x0"]


def _grad_problem():
    """Small inputs (incl. an initial state) and a loss over both scan directions and the last state."""
    inp = make_inputs(4, 2, 11, 3, 2)
    x0 = np.random.default_rng(5).normal(size=(2, 3, 2)).astype(np.float32)  # (b, d, n) initial state
    args = [jnp.asarray(inp[k]) for k in GRAD_NAMES[:-1]] + [jnp.asarray(x0)]
    w = jnp.asarray(np.random.default_rng(6).normal(size=(2, *inp["u"].shape)), jnp.float32)

    def loss(method, *a):
        total = 0.0
        for i, reverse in enumerate((False, True)):  # both directions in one compile
            y, last = ssm.selective_scan_with_state(
                *a[:8], delta_softplus=True, reverse=reverse, method=method, chunk_size=4, initial_state=a[8]
            )
            total = total + jnp.sum(y * w[i]) + jnp.sum(last**2)
        return total

    return args, loss


def test_gradients_of_every_input_agree_between_methods(monkeypatch):
    args, loss = _grad_problem()
    names = GRAD_NAMES

    value_and_grad = {
        m: jax.jit(jax.value_and_grad(functools.partial(loss, m), argnums=tuple(range(9))))(*args)
        for m in METHODS
    }
    # the sequential method's rematerialised blocks (used above 128 tokens), here 4 tokens with a
    # padded last block
    monkeypatch.setattr(ssm, "SEQUENTIAL_BLOCK", 4)
    value_and_grad["blocked"] = jax.jit(
        jax.value_and_grad(functools.partial(loss, "sequential"), argnums=tuple(range(9)))
    )(*args)
    monkeypatch.undo()
    grads = {m: g for m, (_, g) in value_and_grad.items()}
    for m in grads:
        np.testing.assert_allclose(value_and_grad[m][0], value_and_grad["sequential"][0], rtol=1e-5)
        for name, g_ref, g in zip(names, grads["sequential"], grads[m], strict=True):
            chex.assert_shape(g, g_ref.shape)
            assert np.all(np.isfinite(np.asarray(g))), (m, name)
            assert np.abs(np.asarray(g)).max() > 0, (m, name)
            np.testing.assert_allclose(
                np.asarray(g), np.asarray(g_ref), rtol=1e-5, atol=1e-5, err_msg=f"{m} {name}"
            )


@pytest.mark.slow  # many evaluations; the method agreement above runs in the fast suite
def test_sequential_gradient_matches_finite_differences():
    # the hand-written backward pass of the sequential scan against directional central differences
    args, loss = _grad_problem()
    jax.test_util.check_grads(
        jax.jit(functools.partial(loss, "sequential")), args, order=1, modes=("rev",), atol=2e-2, rtol=2e-2
    )


@pytest.mark.parametrize("method", METHODS)
def test_scan_is_causal_and_reverse_is_anticausal(method):
    inp = make_inputs(7, 2, 33, 4, 3)  # the shapes of the tests above: no new compiles
    t = 20
    changed = {k: v.copy() for k, v in inp.items()}
    for k in ("u", "delta", "B", "C", "z"):
        changed[k][:, t + 1 :] += 1.0
    y0, y1 = (np.asarray(run(i, method)) for i in (inp, changed))
    np.testing.assert_array_equal(y0[:, : t + 1], y1[:, : t + 1])
    assert not np.allclose(y0[:, t + 1 :], y1[:, t + 1 :])
    # reverse: output at s depends only on tokens >= s
    changed = {k: v.copy() for k, v in inp.items()}
    for k in ("u", "delta", "B", "C", "z"):
        changed[k][:, :t] += 1.0
    y0, y1 = (np.asarray(run(i, method, reverse=True)) for i in (inp, changed))
    np.testing.assert_array_equal(y0[:, t:], y1[:, t:])


def test_bfloat16_inputs_give_float32_result_cast():
    inp = make_inputs(8, 2, 9, 4, 3)
    bf = {k: jnp.asarray(v, jnp.bfloat16) for k, v in inp.items()}
    up = {k: v.astype(jnp.float32) for k, v in bf.items()}
    # the dtype handling is shared by all methods; one suffices
    got = run(bf, "chunked", chunk_size=4)
    assert got.dtype == jnp.bfloat16
    want = run(up, "chunked", chunk_size=4).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


def test_no_nan_or_inf_at_length_65536_with_large_delta():
    inp = make_inputs(9, 1, 65536, 2, 2, delta_scale=30.0)
    inp["delta"] = np.abs(inp["delta"]) + 20.0  # exp(delta * A) underflows to 0 for many steps
    y_seq = np.asarray(run(inp, "sequential"))
    y_chunk = np.asarray(run(inp, "chunked", chunk_size=512))
    assert np.all(np.isfinite(y_seq)) and np.all(np.isfinite(y_chunk))
    np.testing.assert_allclose(y_chunk, y_seq, rtol=1e-5, atol=1e-4)


@pytest.mark.slow  # six XLA compiles; the benchmark reports the same memory figures
def test_chunked_and_sequential_memory_grow_by_less_than_a_state_per_token():
    # Temp memory per extra token, from XLA's compiled memory analysis: the associative scan stores
    # (length, d, n) decays and states; the chunked and sequential forms grow only by (length, d + n)
    # copies of inputs and outputs (the chunked one adds a constant for its (chunk, d, n) work).
    b, d, n, chunk = 1, 16, 64, 64
    state_bytes = d * n * 4

    def temp_bytes(method, length):
        shapes = [(b, length, d)] * 2 + [(d, n)] + [(b, length, n)] * 2
        args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
        f = functools.partial(ssm.selective_scan, method=method, chunk_size=chunk)
        return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes

    for method, bound in (("chunked", 0.5), ("sequential", 0.5), ("associative", None)):
        per_token = (temp_bytes(method, 1024) - temp_bytes(method, 512)) / 512
        if bound is None:
            assert per_token >= state_bytes, (method, per_token)
        else:
            assert per_token < bound * state_bytes, (method, per_token)


def test_bad_inputs_raise():
    inp = make_inputs(11, 1, 5, 3, 2)
    with pytest.raises(ValueError, match="unknown scan method"):
        run(inp, "parallel")
    with pytest.raises(ValueError, match="A must be"):
        ssm.selective_scan(inp["u"], inp["delta"], inp["A"].T, inp["B"], inp["C"])
    with pytest.raises(ValueError, match="B must be"):
        ssm.selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"][:, :4], inp["C"])
    with pytest.raises(ValueError, match="chunk_size"):
        run(inp, "chunked", chunk_size=0)
    with pytest.raises(ValueError, match="unknown scan method"):
        ssm.Mamba(8, scan_method="fast", rngs=nnx.Rngs(0))


def test_auto_method_resolves_per_backend():
    assert ssm.resolve_method("auto") in METHODS
    assert ssm.resolve_method("auto") == ssm.AUTO_METHOD[jax.default_backend()]


# ------------------------------------------------------------------------------------------------ blocks


def test_mamba_initialisation_follows_mamba_simple():
    dt_min, dt_max = 0.002, 0.05
    m = ssm.Mamba(32, d_state=8, dt_min=dt_min, dt_max=dt_max, rngs=nnx.Rngs(0))
    assert m.d_inner == 64 and m.dt_rank == 2
    dt = np.asarray(jax.nn.softplus(m.dt_proj.bias[...]))
    assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
    assert dt.std() > 0  # drawn, not constant
    w = np.asarray(m.dt_proj.kernel[...])
    assert np.abs(w).max() <= 2**-0.5 and w.min() < 0 < w.max()
    np.testing.assert_allclose(np.asarray(m.A()), -np.tile(np.arange(1, 9), (64, 1)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(m.D[...]), np.ones(64))
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.conv1d.bias is not None
    # A_log and D are their own Param subclass: still trained params, maskable from weight decay
    ssm_paths = {p[0] for p, _ in nnx.to_flat_state(nnx.state(m, ssm.SSMParam))}
    assert ssm_paths == {"A_log", "D"}
    assert "A_log" in {p[0] for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))}


def test_mamba_step_and_stream_reproduce_full_forward():
    m = ssm.Mamba(8, d_state=4, scan_method="chunked", chunk_size=3, rngs=nnx.Rngs(1))
    x = jnp.asarray(np.random.default_rng(12).normal(size=(2, 10, 8)), jnp.float32)
    y = nnx.jit(lambda m, x: m(x))(m, x)
    chex.assert_shape(y, (2, 10, 8))
    state = m.init_state(2)
    chex.assert_shape(state, ((2, 3, 16), (2, 16, 4)))
    step = nnx.jit(lambda m, x_t, s: m.step(x_t, s))  # one compile for all ten steps
    ys = []
    for t in range(10):
        y_t, state = step(m, x[:, t], state)
        ys.append(y_t)
    np.testing.assert_allclose(np.stack(ys, 1), np.asarray(y), **TOL)
    # two equal chunks of a stream (one compile)
    stream = nnx.jit(lambda m, x, s: m.stream(x, s))
    y1, st = stream(m, x[:, :5], m.init_state(2))
    y2, _ = stream(m, x[:, 5:], st)
    np.testing.assert_allclose(np.concatenate([y1, y2], 1), np.asarray(y), **TOL)


def test_mamba_block_is_causal():
    m = ssm.Mamba(8, d_state=4, rngs=nnx.Rngs(2))
    x = np.random.default_rng(13).normal(size=(1, 12, 8)).astype(np.float32)
    x2 = x.copy()
    x2[:, 7:] += 1.0
    y, y2 = np.asarray(m(x)), np.asarray(m(x2))
    np.testing.assert_array_equal(y[:, :7], y2[:, :7])
    assert not np.allclose(y[:, 7:], y2[:, 7:])


def test_mamba_pieces_compose_to_call():
    m = ssm.Mamba(8, d_state=4, rngs=nnx.Rngs(3))
    x = jnp.asarray(np.random.default_rng(14).normal(size=(2, 5, 8)), jnp.float32)
    xi, z = m.split_in(x)
    xc = m.conv(xi)
    dt, B, C = m.dt_bc(xc)
    chex.assert_shape((xi, z, xc, dt, B, C), ((2, 5, 16),) * 4 + ((2, 5, 4),) * 2)
    y, _ = m.scan(xc, dt, B, C, z)
    np.testing.assert_allclose(np.asarray(m.out_proj(y)), np.asarray(m(x)), **TOL)


@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_bimamba_equals_two_mamba_passes_with_shared_parts(combine):
    bi = ssm.BiMamba(8, d_state=4, combine=combine, rngs=nnx.Rngs(4))
    fwd = ssm.Mamba(8, d_state=4, rngs=nnx.Rngs(5))
    bwd = ssm.Mamba(8, d_state=4, rngs=nnx.Rngs(6))
    for mod, suffix in ((fwd, ""), (bwd, "_b")):
        mod.in_proj, mod.out_proj = bi.in_proj, bi.out_proj
        mod.conv1d = getattr(bi, "conv1d" + suffix)
        mod.x_proj = getattr(bi, "x_proj" + suffix)
        mod.dt_proj = getattr(bi, "dt_proj" + suffix)
        mod.D = getattr(bi, "D" + suffix)
    fwd.A_log, bwd.A_log = bi.A_log, bi.A_b_log
    # make the backward branch differ from the forward one so a mix-up would show
    bi.A_b_log[...] = bi.A_b_log[...] + 0.3
    x = jnp.asarray(np.random.default_rng(15).normal(size=(2, 9, 8)), jnp.float32)
    # out_proj has no bias, so out_proj((a + b) / 2) = (out_proj(a) + out_proj(b)) / 2: Vim's formula is
    # the forward pass plus the flipped pass over the flipped sequence
    scale = 0.5 if combine == "mean" else 1.0
    want = scale * (fwd(x) + bwd(x[:, ::-1])[:, ::-1])
    np.testing.assert_allclose(np.asarray(bi(x)), np.asarray(want), **TOL)


def test_mamba_layer_is_pre_norm_residual():
    layer = ssm.MambaLayer(8, bidirectional=True, norm="rms", d_state=4, rngs=nnx.Rngs(7))
    assert isinstance(layer.mixer, ssm.BiMamba) and isinstance(layer.norm, nnx.RMSNorm)
    x = jnp.asarray(np.random.default_rng(16).normal(size=(2, 6, 8)), jnp.float32)
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(x + layer.mixer(layer.norm(x))), **TOL)
    with pytest.raises(ValueError, match="norm"):
        ssm.MambaLayer(8, norm="batch", rngs=nnx.Rngs(0))


@pytest.mark.slow  # one large compile (gradient of a whole bidirectional layer)
def test_bidirectional_layer_gradients_reach_every_parameter():
    layer = ssm.MambaLayer(8, bidirectional=True, d_state=4, rngs=nnx.Rngs(7))
    x = jnp.asarray(np.random.default_rng(16).normal(size=(2, 6, 8)), jnp.float32)

    def loss(model):
        return jnp.mean(model(x) ** 2)

    grads = nnx.jit(nnx.grad(loss))(layer)
    for path, g in nnx.to_flat_state(grads):
        assert np.all(np.isfinite(np.asarray(g[...]))), path
        assert np.abs(np.asarray(g[...])).sum() > 0, path
