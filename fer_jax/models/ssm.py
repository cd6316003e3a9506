"""Selective state-space scan (Mamba's S6) and the Mamba / bidirectional Mamba blocks built on it.

The scan is the numerical core both papers share. It follows the public ``selective_scan_ref`` of
``mamba_ssm`` (state-spaces/mamba), written channels-last::

    delta = softplus(delta + delta_bias)          (each step optional)
    x_t   = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t      x: (batch, d, n)
    y_t   = <x_t, C_t> + D * u_t,   then y *= silu(z)

with u, delta, z ``(batch, length, d)``, A ``(d, n)``, B, C ``(batch, length, n)``, D ``(d,)``. The
arithmetic runs in float32 whatever the input dtype and the result is cast back to ``u.dtype``.

Four ways to evaluate the same recurrence (``method``):

- ``"sequential"``: ``lax.scan`` over time; each step reads O(d + n) inputs and keeps the
  ``(batch, d, n)`` state in cache, so nothing of size ``(length, d, n)`` exists in the forward pass.
  Its backward pass is written by hand (``jax.custom_vjp``, reverse mode only): one saved state per
  block of ``SEQUENTIAL_BLOCK`` tokens, states recomputed one block at a time, then a reverse scan.
- ``"associative"``: ``lax.associative_scan`` over (decay, input) pairs; log-depth, but it materialises
  ``(batch, length, d, n)`` decays and states (what parallel hardware pays for its depth).
- ``"chunked"``: associative inside chunks of ``chunk_size`` tokens, ``lax.scan`` carrying the state
  across chunks; peak memory is ``(batch, chunk, d, n)`` and the chunk body is rematerialised in the
  backward pass so training memory is bounded by the chunk too (plus one state per chunk).
- ``"state_passing"``: all chunks of ``chunk_size`` tokens scanned at once from zero (the sequential
  core with chunks in the batch axis: chunk_size + num_chunks loop steps instead of length), chunk-end
  states passed along, and the entering state's share of each output added densely from cumulative
  log-decays (``exp`` of cumulative sums of non-negative terms times A: never above 1).
- ``"auto"``: the fastest of these on the current backend (measured by ``benchmarks/ssm_scan.py``).

Blocks:

- :class:`Mamba`: the block of ``mamba_ssm/modules/mamba_simple.py`` with its defaults and
  initialisation, a recurrent :meth:`Mamba.step` and a chunk-streaming :meth:`Mamba.stream`.
- :class:`BiMamba`: Vision-Mamba "v2" bidirectional block (shared in/out projections, own backward
  conv, x_proj, dt_proj, A, D).
- :class:`MambaLayer`: pre-norm residual wrapper ``x + mixer(norm(x))``.

A_log and D are :class:`SSMParam` (a subclass of ``nnx.Param``): still trained, and kept out of weight decay
as mamba_simple does (``_no_weight_decay``) by ``fer_jax.training.optim.decay_mask``, which goes by leaf name.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

Method = Literal["auto", "associative", "sequential", "chunked", "state_passing"]
METHODS: tuple[str, ...] = ("associative", "sequential", "chunked", "state_passing")

# Fastest method per backend, from benchmarks/ssm_scan.py (docs/bench/ssm_scan.md). On CPU the per-step
# loop wins: it touches O(d + n) memory per token while the associative scans stream (length, d, n)
# tensors through memory several times. GPU/TPU: not measured yet (no accelerator here); "chunked" is
# the guess there because log-depth work with bounded memory is what accelerators favour.
AUTO_METHOD: dict[str, str] = {"cpu": "sequential", "gpu": "chunked", "tpu": "chunked"}
# lax.scan unroll for the sequential method: measured no faster on CPU at 2-16 and compiles much slower.
SEQUENTIAL_UNROLL = 1
# Tokens per block of the sequential method: its backward pass keeps one state per block and
# recomputes the states of one block at a time (bounds training memory).
SEQUENTIAL_BLOCK = 128
# The same for the in-chunk loop of "state_passing" (its batch is num_chunks times larger).
STATE_PASSING_BLOCK = 128


class SSMParam(nnx.Param):
    """A trained SSM parameter (A_log, D) that optimizers should not weight-decay.

    The weight-decay rule is by leaf name (``fer_jax.training.optim.NO_DECAY_NAMES``), not by this type.
    """


def resolve_method(method: str) -> str:
    """Maps ``"auto"`` to the concrete method for the default backend; validates the name."""
    if method == "auto":
        return AUTO_METHOD.get(jax.default_backend(), "chunked")
    if method not in METHODS:
        raise ValueError(f"unknown scan method {method!r}; expected 'auto' or one of {METHODS}")
    return method


# --------------------------------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------------------------------


def _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state) -> None:
    if u.ndim != 3:
        raise ValueError(f"u must be (batch, length, d), got shape {u.shape}")
    b, length, d = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta shape {delta.shape} != u shape {u.shape}")
    if A.ndim != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n), got shape {A.shape}")
    n = A.shape[1]
    for name, arr in (("B", B), ("C", C)):
        if arr.shape != (b, length, n):
            raise ValueError(f"{name} must be (batch, length, n) = {(b, length, n)}, got {arr.shape}")
    if D is not None and D.shape != (d,):
        raise ValueError(f"D must be (d,) = {(d,)}, got {D.shape}")
    if delta_bias is not None and delta_bias.shape != (d,):
        raise ValueError(f"delta_bias must be (d,) = {(d,)}, got {delta_bias.shape}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z shape {z.shape} != u shape {u.shape}")
    if initial_state is not None and initial_state.shape != (b, d, n):
        raise ValueError(f"initial_state must be (batch, d, n) = {(b, d, n)}, got {initial_state.shape}")


def _to_blocks(xs, block: int):
    """Time-major arrays (L, ...) -> (num_blocks, block, ...), zero-padded at the end."""
    length = xs[0].shape[0]
    num_blocks = -(-length // block)
    pad = num_blocks * block - length
    return tuple(
        jnp.pad(t, ((0, pad),) + ((0, 0),) * (t.ndim - 1)).reshape(num_blocks, block, *t.shape[1:])
        for t in xs
    ), num_blocks


def _seq_forward(delta, u, A, B, C, x0, reverse: bool, block: int):
    """Blocked lax.scan over time-major inputs; returns ((y, last), state entering each block)."""

    def step(x, inp):
        d_t, u_t, b_t, c_t = inp  # (b, d), (b, d), (b, n), (b, n)
        x = jnp.exp(d_t[:, :, None] * A) * x + (d_t * u_t)[:, :, None] * b_t[:, None, :]
        return x, jnp.einsum("bdn,bn->bd", x, c_t)

    def run_block(x, inp):
        x_last, ys = lax.scan(step, x, inp, reverse=reverse, unroll=SEQUENTIAL_UNROLL)
        return x_last, (ys, x)

    length = u.shape[0]
    # delta = 0 pads are identity steps (decay 1, input 0) in either direction; their outputs are dropped
    xs, num_blocks = _to_blocks((delta, u, B, C), block)
    last, (ys, starts) = lax.scan(run_block, x0, xs, reverse=reverse)
    return (ys.reshape(num_blocks * block, *ys.shape[2:])[:length], last), starts


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _seq_core(delta, u, A, B, C, x0, reverse: bool, block: int):
    """Sequential scan on time-major float32 inputs: delta, u (L, b, d); B, C (L, b, n); x0 (b, d, n).

    Returns (y (L, b, d) without D/z, last state (b, d, n)). Its hand-written backward pass (reverse-mode
    only) keeps one state per block and recomputes a block's states when it gets there, so training
    memory is O(length * (d + n) + block * d * n) and no per-token residuals are stored by autodiff.
    """
    return _seq_forward(delta, u, A, B, C, x0, reverse, block)[0]


def _seq_core_fwd(delta, u, A, B, C, x0, reverse, block):
    out, starts = _seq_forward(delta, u, A, B, C, x0, reverse, block)
    return out, (delta, u, A, B, C, starts)


def _seq_core_bwd(reverse, block, res, cts):
    # x_t = a_t x_prev + delta_t u_t B_t with a_t = exp(delta_t A), y_t = <x_t, C_t>. With G_t the
    # gradient w.r.t. x_t (from y_t and from later states): G_t = gy_t C_t + a_next G_next, and
    # d/d(delta_t A) = G_t x_prev a_t; d/d(delta_t u_t B_t) = G_t.
    delta, u, A, B, C, starts = res
    gy, glast = cts
    length = u.shape[0]
    xs, num_blocks = _to_blocks((delta, u, B, C, gy), block)

    def states_step(x, inp):
        d_t, u_t, b_t = inp
        a = jnp.exp(d_t[:, :, None] * A)
        x_new = a * x + (d_t * u_t)[:, :, None] * b_t[:, None, :]
        return x_new, (x, x_new, a)  # previous state in scan order, state, decay

    def grad_step(g, inp):
        d_t, u_t, b_t, c_t, gy_t, x_prev, x, a = inp
        G = g + gy_t[:, :, None] * c_t[:, None, :]
        ga = G * x_prev * a
        g_bu = jnp.einsum("bdn,bn->bd", G, b_t)  # sum_n G B
        grads = (
            jnp.einsum("bdn,dn->bd", ga, A) + g_bu * u_t,  # delta
            g_bu * d_t,  # u
            jnp.einsum("bdn,bd->bn", G, d_t * u_t),  # B
            jnp.einsum("bd,bdn->bn", gy_t, x),  # C
            jnp.einsum("bdn,bd->dn", ga, d_t),  # A (summed over the block below)
        )
        return a * G, grads

    def grad_block(carry, inp):
        g, gA = carry
        d_c, u_c, b_c, c_c, gy_c, x_in = inp
        # recompute this block's states: (block, b, d, n) is the only state-sized temporary
        _, (x_prev, x, a) = lax.scan(states_step, x_in, (d_c, u_c, b_c), reverse=reverse)
        g, (gd, gu, gb, gc, ga_) = lax.scan(
            grad_step, g, (d_c, u_c, b_c, c_c, gy_c, x_prev, x, a), reverse=not reverse
        )
        return (g, gA + ga_.sum(0)), (gd, gu, gb, gc)

    (gx0, gA), per_token = lax.scan(
        grad_block, (glast, jnp.zeros_like(A)), xs + (starts,), reverse=not reverse
    )
    gd, gu, gb, gc = (t.reshape(num_blocks * block, *t.shape[2:])[:length] for t in per_token)
    return gd, gu, gA, gb, gc, gx0


_seq_core.defvjp(_seq_core_fwd, _seq_core_bwd)


def _scan_sequential(delta, u, A, B, C, x0, reverse: bool):
    """lax.scan over time (in blocks of ``SEQUENTIAL_BLOCK`` tokens, hand-written backward pass).

    Inputs float32 channels-last; returns y (b, l, d) without D/z and the last state.
    """
    block = max(1, min(SEQUENTIAL_BLOCK, u.shape[1]))
    # time-major so each step slices contiguous rows
    xs = tuple(jnp.swapaxes(t, 0, 1) for t in (delta, u, B, C))
    y, last = _seq_core(xs[0], xs[1], A, xs[2], xs[3], x0, reverse, block)
    return jnp.swapaxes(y, 0, 1), last


def _combine(left, right):
    # (a1, b1) then (a2, b2): x -> a2 * (a1 * x + b1) + b2
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def _scan_associative(delta, u, A, B, C, x0, reverse: bool):
    """Associative scan over the whole length; materialises (b, l, d, n). Same contract as above."""
    decay = jnp.exp(delta[..., None] * A)  # (b, l, d, n)
    inp = (delta * u)[..., None] * B[:, :, None, :]  # (b, l, d, n)
    # fold the initial state into the first element in scan order: x_first = a * x0 + b
    first = -1 if reverse else 0
    inp = inp.at[:, first].add(decay[:, first] * x0)
    _, states = lax.associative_scan(_combine, (decay, inp), reverse=reverse, axis=1)
    y = jnp.einsum("bldn,bln->bld", states, C)
    return y, states[:, 0 if reverse else -1]


def _pad_to_chunks(chunk_size: int, delta, u, B, C):
    """``(chunk, num_chunks, (delta, u, B, C))``: the chunk length (at most the sequence's) and the inputs
    padded at the end to ``num_chunks * chunk`` tokens. delta = 0 makes a padded step the identity (decay 1,
    input 0), so the state passes through it unchanged in either direction; the caller slices the padded
    outputs off."""
    length = u.shape[1]
    chunk = max(1, min(chunk_size, length))
    num_chunks = -(-length // chunk)
    pad = num_chunks * chunk - length
    if pad:
        delta, u, B, C = (jnp.pad(t, ((0, 0), (0, pad), (0, 0))) for t in (delta, u, B, C))
    return chunk, num_chunks, (delta, u, B, C)


def _scan_chunked(delta, u, A, B, C, x0, reverse: bool, chunk_size: int):
    """Associative scan inside chunks, lax.scan across them; memory (b, chunk, d, n)."""
    b, length, d = u.shape
    n = A.shape[1]
    chunk, num_chunks, (delta, u, B, C) = _pad_to_chunks(chunk_size, delta, u, B, C)

    def to_chunks(t):  # (b, L, k) -> (num_chunks, b, chunk, k)
        return jnp.swapaxes(t.reshape(b, num_chunks, chunk, t.shape[-1]), 0, 1)

    xs = tuple(to_chunks(t) for t in (delta, u, B, C))

    @jax.checkpoint
    def body(x, inp):
        d_c, u_c, b_c, c_c = inp
        y_c, x_last = _scan_associative(d_c, u_c, A, b_c, c_c, x, reverse)
        return x_last, y_c

    last, ys = lax.scan(body, x0, xs, reverse=reverse)  # ys: (num_chunks, b, chunk, d)
    y = jnp.swapaxes(ys, 0, 1).reshape(b, num_chunks * chunk, d)[:, :length]
    del n
    return y, last


def _scan_state_passing(delta, u, A, B, C, x0, reverse: bool, chunk_size: int):
    """Chunks scanned all at once from zero, chunk-end states passed along, a dense correction added.

    With chunks of L tokens and S_t = sum_{s<=t in the chunk} delta_s (a cumulative sum of
    non-negative terms when delta >= 0, so ``exp(S_t A) <= 1``: no exp of a large positive number and no
    difference of cumulative sums):

    1. one ``lax.scan`` over the L positions of a chunk, all chunks at once (chunks in the batch axis),
       each from a zero state: outputs ``y0_t`` and each chunk's end state ``h_c`` (the sequential core
       with its hand-written backward pass);
    2. a ``lax.scan`` over the num_chunks chunk boundaries: ``H_c = exp(S_L A) H_{c-1} + h_c``, the
       state entering each chunk;
    3. the entering state's share of each output, dense (fused elementwise work and a sum over n):
       ``y_t = y0_t + sum_n exp(S_t A) H_{c-1} C_t``, because the recurrence is linear in the state.

    The per-token loop (``"sequential"``) pays a fixed cost per step; here L + num_chunks steps replace
    ``length`` of them, each step doing num_chunks times more vectorised work. Work is about twice the
    sequential scan's (step 3's exps). Same contract as the other methods; ``reverse`` scans the
    flipped sequence.
    """
    if reverse:
        flip = functools.partial(jnp.flip, axis=1)
        y, last = _scan_state_passing(flip(delta), flip(u), A, flip(B), flip(C), x0, False, chunk_size)
        return flip(y), last
    b, length, d = u.shape
    n = A.shape[1]
    chunk, num_chunks, (delta, u, B, C) = _pad_to_chunks(chunk_size, delta, u, B, C)

    def to_chunks(t):  # (b, L, k) -> (chunk, num_chunks * b, k): position in the chunk leads (scan axis)
        t = jnp.transpose(t.reshape(b, num_chunks, chunk, t.shape[-1]), (2, 1, 0, 3))
        return t.reshape(chunk, num_chunks * b, t.shape[-1])

    dt, uc, bc, cc = (to_chunks(t) for t in (delta, u, B, C))
    zero = jnp.zeros((num_chunks * b, d, n), jnp.float32)
    block = max(1, min(STATE_PASSING_BLOCK, chunk))
    y0, ends = _seq_core(dt, uc, A, bc, cc, zero, False, block)  # (chunk, nc * b, d), (nc * b, d, n)
    cum = jnp.cumsum(dt, axis=0)  # S_t: (chunk, nc * b, d)

    def pass_state(x, inp):
        a, h = inp
        return a * x + h, x  # carry the state out of the chunk; emit the one entering it

    decay = jnp.exp(cum[-1][..., None] * A).reshape(num_chunks, b, d, n)
    last, starts = lax.scan(pass_state, x0, (decay, ends.reshape(num_chunks, b, d, n)))
    starts = starts.reshape(num_chunks * b, d, n)
    y = y0 + jnp.sum(jnp.exp(cum[..., None] * A) * starts * cc[:, :, None, :], axis=-1)
    y = jnp.transpose(y.reshape(chunk, num_chunks, b, d), (2, 1, 0, 3)).reshape(b, num_chunks * chunk, d)
    return y[:, :length], last


def selective_scan_with_state(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array | None = None,
    z: jax.Array | None = None,
    delta_bias: jax.Array | None = None,
    delta_softplus: bool = False,
    reverse: bool = False,
    method: Method = "associative",
    chunk_size: int = 256,
    initial_state: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Selective scan that also takes and returns the SSM state (streaming, recurrent steps).

    Args:
      u, delta: ``(batch, length, d)``.
      A: ``(d, n)`` (negative real for a decaying system; Mamba uses ``-exp(A_log)``).
      B, C: ``(batch, length, n)``.
      D: ``(d,)`` skip connection, optional.
      z: ``(batch, length, d)`` gate, optional: ``y *= silu(z)``.
      delta_bias: ``(d,)`` added to delta before the optional softplus.
      delta_softplus: apply softplus to delta (after the bias).
      reverse: scan from the last token to the first (the backward branch of a bidirectional block);
        equals ``flip(scan(flip(inputs)))``.
      method: "associative" | "sequential" | "chunked" | "state_passing" | "auto".
      chunk_size: tokens per chunk for "chunked" and "state_passing" (need not divide the length).
      initial_state: ``(batch, d, n)`` state before the first token in scan order (zeros if None).

    Returns:
      ``(y, last_state)``: y ``(batch, length, d)`` in ``u.dtype``; last_state ``(batch, d, n)`` float32,
      the state after the last token in scan order (token 0 when ``reverse``).
    """
    method = resolve_method(method)
    _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dtype = u.dtype
    f32 = jnp.float32
    u, delta, A, B, C = (jnp.asarray(t, f32) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + jnp.asarray(delta_bias, f32)
    if delta_softplus:
        delta = jax.nn.softplus(delta)
    b, _, d = u.shape
    x0 = jnp.zeros((b, d, A.shape[1]), f32) if initial_state is None else jnp.asarray(initial_state, f32)
    if method == "sequential":
        y, last = _scan_sequential(delta, u, A, B, C, x0, reverse)
    elif method == "associative":
        y, last = _scan_associative(delta, u, A, B, C, x0, reverse)
    elif method == "chunked":
        y, last = _scan_chunked(delta, u, A, B, C, x0, reverse, chunk_size)
    else:
        y, last = _scan_state_passing(delta, u, A, B, C, x0, reverse, chunk_size)
    if D is not None:
        y = y + u * jnp.asarray(D, f32)
    if z is not None:
        y = y * jax.nn.silu(jnp.asarray(z, f32))
    return y.astype(out_dtype), last


def selective_scan(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array | None = None,
    z: jax.Array | None = None,
    delta_bias: jax.Array | None = None,
    delta_softplus: bool = False,
    reverse: bool = False,
    method: Method = "associative",
    chunk_size: int = 256,
) -> jax.Array:
    """Channels-last ``selective_scan_ref``: returns y ``(batch, length, d)`` in ``u.dtype``.

    See :func:`selective_scan_with_state` for the arguments.
    """
    y, _ = selective_scan_with_state(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, method, chunk_size
    )
    return y


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------

# PyTorch's default Linear/Conv init, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), which
# mamba_simple keeps for in_proj, x_proj, out_proj and conv1d (and their biases).
_torch_uniform = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _uniform(bound: float):
    """Initializer drawing U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _linear(d_in: int, d_out: int, bias: bool, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=bias,
        kernel_init=_torch_uniform,
        bias_init=_uniform(1.0 / math.sqrt(d_in)),
        rngs=rngs,
    )


class CausalDepthwiseConv1d(nnx.Module):
    """Depthwise 1-D convolution over time, channels-last, PyTorch ``Conv1d(groups=channels)`` arithmetic.

    ``kernel`` ``(kernel_size, channels)`` holds torch's ``weight[:, 0, :]`` transposed; causal:
    ``out[t] = sum_j kernel[j] * x[t - (K-1) + j]``. Written as K shifted multiply-adds rather than a
    grouped ``lax.conv`` because that is faster on CPU for the small K Mamba uses.
    """

    def __init__(self, channels: int, kernel_size: int, *, use_bias: bool = True, rngs: nnx.Rngs):
        self.kernel_size = kernel_size
        bound = 1.0 / math.sqrt(kernel_size)  # torch fan_in = in_channels / groups * K = K
        key = rngs.params()
        self.kernel = nnx.Param(jax.random.uniform(key, (kernel_size, channels), jnp.float32, -bound, bound))
        self.bias = (
            nnx.Param(jax.random.uniform(rngs.params(), (channels,), jnp.float32, -bound, bound))
            if use_bias
            else None
        )

    def __call__(self, x: jax.Array, prefix: jax.Array | None = None, anti_causal: bool = False) -> jax.Array:
        """x ``(batch, length, channels)`` -> same shape.

        prefix: ``(batch, K-1, channels)`` inputs that preceded x (streaming); zeros if None.
        anti_causal: ``out[t] = sum_j kernel[j] * x[t + (K-1) - j]``, i.e. the causal conv applied to the
          time-reversed sequence and reversed back (Vim's backward branch), computed without flipping.
        """
        k = self.kernel_size
        length = x.shape[1]
        w = self.kernel[...].astype(x.dtype)
        if anti_causal:
            ext = jnp.pad(x, ((0, 0), (0, k - 1), (0, 0)))
            out = sum(ext[:, k - 1 - j : k - 1 - j + length] * w[j] for j in range(k))
        else:
            if prefix is None:
                ext = jnp.pad(x, ((0, 0), (k - 1, 0), (0, 0)))
            else:
                ext = jnp.concatenate([prefix.astype(x.dtype), x], axis=1)
            out = sum(ext[:, j : j + length] * w[j] for j in range(k))
        if self.bias is not None:
            out = out + self.bias[...].astype(x.dtype)
        return out


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _dt_init_bias(key, d_inner: int, dt_min: float, dt_max: float, dt_init_floor: float):
    # mamba_simple: dt ~ exp(U(log dt_min, log dt_max)) clamped below at dt_init_floor; the bias is its
    # inverse softplus, so softplus(bias) = dt at initialisation. Jitted so that eager and traced init
    # run the same fused program (op by op, the multiply-add and exp/log round differently: 1 ulp).
    dt = jnp.exp(
        jax.random.uniform(key, (d_inner,), jnp.float32) * (math.log(dt_max) - math.log(dt_min))
        + math.log(dt_min)
    )
    dt = jnp.maximum(dt, dt_init_floor)
    return dt + jnp.log(-jnp.expm1(-dt))


def _branch_params(
    d_inner: int,
    d_state: int,
    d_conv: int,
    dt_rank: int,
    dt_min: float,
    dt_max: float,
    dt_init_floor: float,
    conv_bias: bool,
    rngs: nnx.Rngs,
) -> tuple:
    """The per-direction parameters of a Mamba block: (conv1d, x_proj, dt_proj, A_log, D)."""
    conv1d = CausalDepthwiseConv1d(d_inner, d_conv, use_bias=conv_bias, rngs=rngs)
    x_proj = _linear(d_inner, dt_rank + 2 * d_state, False, rngs)
    # dt_init="random", dt_scale=1: weight U(+-dt_rank^-0.5); bias = inverse softplus of the initial dt
    dt_proj = nnx.Linear(dt_rank, d_inner, kernel_init=_uniform(dt_rank**-0.5), rngs=rngs)
    dt_proj.bias[...] = _dt_init_bias(rngs.params(), d_inner, dt_min, dt_max, dt_init_floor)
    # S4D-real: A = -(1..N) for every channel
    a = np.tile(np.arange(1, d_state + 1, dtype=np.float32), (d_inner, 1))
    A_log = SSMParam(jnp.asarray(np.log(a)))
    D = SSMParam(jnp.ones((d_inner,), jnp.float32))
    return conv1d, x_proj, dt_proj, A_log, D


def _dt_bc(x_proj: nnx.Linear, dt_proj: nnx.Linear, xc: jax.Array, dt_rank: int, d_state: int):
    x_dbl = x_proj(xc)
    dt, B, C = jnp.split(x_dbl, [dt_rank, dt_rank + d_state], axis=-1)
    # dt_proj without its bias: the bias goes to the scan as delta_bias (float32), as mamba_simple does
    dt = dt @ dt_proj.kernel[...].astype(dt.dtype)
    return dt, B, C


def _branch_scan(
    A_log: nnx.Variable,
    D: nnx.Variable,
    dt_proj: nnx.Linear,
    xc,
    dt,
    B,
    C,
    z,
    *,
    reverse: bool,
    method: str,
    chunk_size: int,
    initial_state=None,
):
    return selective_scan_with_state(
        xc,
        dt,
        -jnp.exp(A_log[...].astype(jnp.float32)),
        B,
        C,
        D=D[...],
        z=z,
        delta_bias=dt_proj.bias[...],
        delta_softplus=True,
        reverse=reverse,
        method=method,
        chunk_size=chunk_size,
        initial_state=initial_state,
    )


def _resolve_dt_rank(dt_rank, d_model: int) -> int:
    if dt_rank == "auto":
        return math.ceil(d_model / 16)
    if not isinstance(dt_rank, int) or dt_rank < 1:
        raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
    return dt_rank


class Mamba(nnx.Module):
    """The Mamba block of mamba_simple: ``x (batch, length, d_model) -> (batch, length, d_model)``.

    in_proj -> (x, z) -> causal depthwise conv1d -> SiLU -> x_proj -> (dt, B, C) -> dt_proj ->
    selective scan (softplus(dt + bias), A = -exp(A_log), D, gate SiLU(z)) -> out_proj.

    Submodules carry mamba_simple's names (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``,
    ``D``, ``out_proj``) so a state-dict converter can map them: torch Linear weights are transposed
    into ``kernel``; ``conv1d.weight (d_inner, 1, K)`` becomes ``conv1d.kernel (K, d_inner)``.

    The pieces are exposed for blocks that intervene between "compute B, C" and "scan" (MCO-Mamba):
    ``x, z = block.split_in(h)``; ``xc = block.conv(x)``; ``dt, B, C = block.dt_bc(xc)``;
    ``y = block.scan(xc, dt, B, C, z)``; ``out = block.out_proj(y)``. Shapes: x, z, xc, dt, y
    ``(batch, length, d_inner)``; B, C ``(batch, length, d_state)``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_method: Method = "auto",
        chunk_size: int = 256,
        rngs: nnx.Rngs,
    ):
        resolve_method(scan_method)  # fail early on a bad name
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = _resolve_dt_rank(dt_rank, d_model)
        self.scan_method = scan_method
        self.chunk_size = chunk_size
        self.in_proj = _linear(d_model, 2 * self.d_inner, bias, rngs)
        args = (self.d_inner, d_state, d_conv, self.dt_rank, dt_min, dt_max, dt_init_floor, conv_bias)
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = _branch_params(*args, rngs)
        self.out_proj = _linear(self.d_inner, d_model, bias, rngs)

    # -- pieces -------------------------------------------------------------------------------------
    def split_in(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(batch, length, d_model)`` -> (x, z), each ``(batch, length, d_inner)``."""
        xz = self.in_proj(x)
        return xz[..., : self.d_inner], xz[..., self.d_inner :]

    def conv(self, x: jax.Array, prefix: jax.Array | None = None) -> jax.Array:
        """Causal depthwise conv + SiLU; prefix ``(batch, d_conv-1, d_inner)`` for streaming."""
        return jax.nn.silu(self.conv1d(x, prefix=prefix))

    def dt_bc(self, xc: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x_proj split + dt_proj (without bias; the scan adds it): dt ``(b, l, d_inner)``, B, C ``(b, l, N)``."""
        return _dt_bc(self.x_proj, self.dt_proj, xc, self.dt_rank, self.d_state)

    def A(self) -> jax.Array:
        """``(d_inner, d_state)`` float32: ``-exp(A_log)``."""
        return -jnp.exp(self.A_log[...].astype(jnp.float32))

    def scan(
        self,
        xc: jax.Array,
        dt: jax.Array,
        B: jax.Array,
        C: jax.Array,
        z: jax.Array | None,
        *,
        reverse: bool = False,
        initial_state: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Gated scan output ``y (batch, length, d_inner)`` (before out_proj) and the last SSM state."""
        return _branch_scan(
            self.A_log,
            self.D,
            self.dt_proj,
            xc,
            dt,
            B,
            C,
            z,
            reverse=reverse,
            method=self.scan_method,
            chunk_size=self.chunk_size,
            initial_state=initial_state,
        )

    # -- full sequence ------------------------------------------------------------------------------
    def __call__(self, x: jax.Array) -> jax.Array:
        """``(batch, length, d_model)`` -> ``(batch, length, d_model)``."""
        xi, z = self.split_in(x)
        xc = self.conv(xi)
        dt, B, C = self.dt_bc(xc)
        y, _ = self.scan(xc, dt, B, C, z)
        return self.out_proj(y)

    # -- streaming ----------------------------------------------------------------------------------
    def init_state(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """Zero state: conv_state ``(batch, d_conv-1, d_inner)`` (the last inputs to conv1d, oldest
        first) and ssm_state ``(batch, d_inner, d_state)`` float32."""
        return (
            jnp.zeros((batch_size, self.d_conv - 1, self.d_inner), jnp.float32),
            jnp.zeros((batch_size, self.d_inner, self.d_state), jnp.float32),
        )

    def stream(
        self, x: jax.Array, state: tuple[jax.Array, jax.Array]
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """Processes the next chunk ``x (batch, length, d_model)`` after ``state``; returns (y, new state).

        Feeding a sequence in pieces gives the same output as one ``__call__`` over all of it.
        """
        conv_state, ssm_state = state
        xi, z = self.split_in(x)
        xc = self.conv(xi, prefix=conv_state)
        k = self.d_conv - 1
        ext = jnp.concatenate([conv_state.astype(xi.dtype), xi], axis=1)
        new_conv = ext[:, ext.shape[1] - k :].astype(conv_state.dtype)
        dt, B, C = self.dt_bc(xc)
        y, new_ssm = self.scan(xc, dt, B, C, z, initial_state=ssm_state)
        return self.out_proj(y), (new_conv, new_ssm)

    def step(
        self, x_t: jax.Array, state: tuple[jax.Array, jax.Array]
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """One token: ``x_t (batch, d_model)`` -> ``(y_t (batch, d_model), new state)``."""
        y, state = self.stream(x_t[:, None], state)
        return y[:, 0], state


class BiMamba(nnx.Module):
    """Bidirectional Mamba, Vision-Mamba "v2" style: ``(batch, length, d_model)`` -> same shape.

    Shared ``in_proj``/``out_proj``; forward branch ``conv1d, x_proj, dt_proj, A_log, D`` and backward
    branch ``conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b`` (Vim's names). Vim runs the backward branch
    on the flipped sequence and flips its output back; here the same result comes without flips: its
    conv runs anti-causally (``CausalDepthwiseConv1d(anti_causal=True)``, exactly flip-conv-flip) and
    its scan runs with ``reverse=True``. Output ``out_proj((y_f + y_b) / 2)`` (``combine="mean"``) or
    ``out_proj(y_f + y_b)`` (``"sum"``, Vim's ``if_divide_out=False``).

    Pieces for cross-modal variants: ``split_in``, ``conv(x, backward)``, ``dt_bc(xc, backward)``,
    ``scan(xc, dt, B, C, z, backward)``, ``combine_out(y_f, y_b)``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        combine: Literal["mean", "sum"] = "mean",
        scan_method: Method = "auto",
        chunk_size: int = 256,
        rngs: nnx.Rngs,
    ):
        resolve_method(scan_method)
        if combine not in ("mean", "sum"):
            raise ValueError(f"combine must be 'mean' or 'sum', got {combine!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = _resolve_dt_rank(dt_rank, d_model)
        self.combine = combine
        self.scan_method = scan_method
        self.chunk_size = chunk_size
        args = (self.d_inner, d_state, d_conv, self.dt_rank, dt_min, dt_max, dt_init_floor, conv_bias)
        self.in_proj = _linear(d_model, 2 * self.d_inner, bias, rngs)
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = _branch_params(*args, rngs)
        self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b = _branch_params(*args, rngs)
        self.out_proj = _linear(self.d_inner, d_model, bias, rngs)

    def split_in(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(batch, length, d_model)`` -> (x, z), each ``(batch, length, d_inner)``."""
        xz = self.in_proj(x)
        return xz[..., : self.d_inner], xz[..., self.d_inner :]

    def conv(self, x: jax.Array, backward: bool = False) -> jax.Array:
        """Causal (forward) or anti-causal (backward) depthwise conv + SiLU."""
        conv = self.conv1d_b if backward else self.conv1d
        return jax.nn.silu(conv(x, anti_causal=backward))

    def dt_bc(self, xc: jax.Array, backward: bool = False):
        """(dt, B, C) of one branch; see :meth:`Mamba.dt_bc`."""
        if backward:
            return _dt_bc(self.x_proj_b, self.dt_proj_b, xc, self.dt_rank, self.d_state)
        return _dt_bc(self.x_proj, self.dt_proj, xc, self.dt_rank, self.d_state)

    def scan(self, xc, dt, B, C, z, backward: bool = False) -> jax.Array:
        """Gated scan output of one branch ``(batch, length, d_inner)``, in original token order."""
        params = (self.A_b_log, self.D_b, self.dt_proj_b) if backward else (self.A_log, self.D, self.dt_proj)
        y, _ = _branch_scan(
            *params,
            xc,
            dt,
            B,
            C,
            z,
            reverse=backward,
            method=self.scan_method,
            chunk_size=self.chunk_size,
        )
        return y

    def combine_out(self, y_f: jax.Array, y_b: jax.Array) -> jax.Array:
        """``out_proj`` of the combined branch outputs -> ``(batch, length, d_model)``."""
        y = y_f + y_b
        if self.combine == "mean":
            y = y / 2
        return self.out_proj(y)

    def __call__(self, x: jax.Array) -> jax.Array:
        xi, z = self.split_in(x)
        ys = []
        for backward in (False, True):
            xc = self.conv(xi, backward)
            dt, B, C = self.dt_bc(xc, backward)
            ys.append(self.scan(xc, dt, B, C, z, backward))
        return self.combine_out(*ys)


class MambaLayer(nnx.Module):
    """Pre-norm residual layer ``x + mixer(norm(x))`` with a :class:`Mamba` or :class:`BiMamba` mixer.

    ``norm``: "layer" (LayerNorm, eps 1e-5 as torch) or "rms" (RMSNorm, eps 1e-5 as mamba_ssm's
    Block). Extra keyword arguments go to the mixer. ``(batch, length, d_model)`` -> same shape.
    """

    def __init__(
        self,
        d_model: int,
        *,
        bidirectional: bool = False,
        norm: Literal["layer", "rms"] = "layer",
        rngs: nnx.Rngs,
        **mixer_kwargs,
    ):
        if norm == "layer":
            self.norm = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)
        elif norm == "rms":
            self.norm = nnx.RMSNorm(d_model, epsilon=1e-5, rngs=rngs)
        else:
            raise ValueError(f"norm must be 'layer' or 'rms', got {norm!r}")
        mixer_cls = BiMamba if bidirectional else Mamba
        self.mixer = mixer_cls(d_model, rngs=rngs, **mixer_kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.mixer(self.norm(x))
