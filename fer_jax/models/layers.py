"""Building blocks shared by the torchvision ports (ResNet, EfficientNetV2): conv, BatchNorm, conv-BN-act.

Everything is NHWC (float32 by default; bfloat16 compute is ``fer_jax.models.compute``'s job). The helpers reproduce torchvision's arithmetic exactly so that converted
torchvision weights give the same outputs:

- ``conv2d`` pads symmetrically by ``(kernel - 1) // 2`` like ``nn.Conv2d(padding=k // 2)``, so odd input
  sizes give torchvision's (floor) output sizes, not XLA's "SAME" (ceil) sizes;
- ``BatchNorm`` normalises with the biased batch variance but updates ``var`` with the unbiased one,
  exactly as ``torch.nn.BatchNorm2d`` does (``flax.nnx.BatchNorm`` stores the biased one);
- ``ConvNormAct`` is ``torchvision.ops.Conv2dNormActivation``; it is an ``nnx.List`` so that its state
  paths (``0.kernel``, ``1.scale`` ...) mirror torchvision's state-dict keys (``0.weight``, ``1.weight``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_CHUNK = 1 << 16


@functools.partial(jax.jit, static_argnums=(2,))
def _draw_chunk(key: jax.Array, index: jax.Array, kind: str) -> jax.Array:
    key = jax.random.fold_in(key, index)
    if kind == "normal":
        return jax.random.normal(key, (_CHUNK,), jnp.float32)
    return jax.random.uniform(key, (_CHUNK,), jnp.float32, -1.0, 1.0)


def _sample(key: jax.Array, shape: tuple[int, ...], kind: str, scale: float, dtype) -> jax.Array:
    """``scale`` * standard normal (or U(-1, 1)) of ``shape``: the same numbers eagerly and under a trace.

    The values always come from fixed-size chunks (``_draw_chunk``, one compiled program) taken in order
    and cut to ``shape``. Why not ``jax.random.normal(key, shape)``: run eagerly, that compiles one XLA
    program per distinct shape (0.2-0.5 s each on a CPU; EfficientNetV2-S has ~150 shapes). Eagerly the
    chunks are assembled in numpy (no per-shape compile), under a trace (``nnx.eval_shape``, ``jax.jit``)
    in ``jax.numpy``; both assemble the same draws, so one seed gives one model whether init is jitted.
    """
    traced = isinstance(key, jax.core.Tracer)
    xp = jnp if traced else np
    n = math.prod(shape)
    chunks = [_draw_chunk(key, i, kind) for i in range(-(-n // _CHUNK))]
    if not traced:
        chunks = [np.asarray(c) for c in chunks]
    flat = xp.concatenate(chunks)[:n] if chunks else xp.zeros((0,), np.float32)
    out = (xp.float32(scale) * flat).reshape(shape).astype(np.dtype(dtype))
    return out if traced else jnp.asarray(out)


def conv_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """torchvision's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` for an HWIO kernel."""
    fan_out = shape[0] * shape[1] * shape[-1]
    return _sample(key, shape, "normal", math.sqrt(2.0 / fan_out), dtype)


def zeros_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    del key
    return jnp.asarray(np.zeros(shape, np.dtype(dtype)))  # numpy: no per-shape XLA compile when run eagerly


def uniform_fan_in_init(fan_in: int):
    """torch ``nn.Linear``'s default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return _sample(key, shape, "uniform", 1.0 / math.sqrt(fan_in), dtype)

    return init


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """``nn.Conv2d(in, out, k, stride, padding=(k - 1) // 2, groups, bias)`` as an NHWC ``nnx.Conv``."""
    pad = (kernel_size - 1) // 2
    conv_type = DepthwiseConv if groups == in_channels == out_channels and groups > 1 else nnx.Conv
    return conv_type(
        in_channels,
        out_channels,
        kernel_size=(kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=conv_init,
        bias_init=zeros_init,
        rngs=rngs,
    )


def linear(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """``nn.Linear(in, out)``; kernel ``(in, out)`` (torch's weight transposed), torch's default init."""
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=uniform_fan_in_init(in_features),
        bias_init=uniform_fan_in_init(in_features),
        rngs=rngs,
    )


class DepthwiseConv(nnx.Conv):
    """A depthwise ``nnx.Conv`` (``feature_group_count == in == out``), as k*k shifted multiplies on CPU.

    Same parameters and result as the grouped convolution (kernel ``(k, k, 1, C)``), but XLA's CPU backend
    runs grouped convolutions 10-25x slower than this fused elementwise form (batch 16, 3x3, 256-1536
    channels: 24 vs 0.9 ms at 4x4, 182 vs 9.6 ms at 28x28), which made EfficientNet 4x slower than
    torchvision. GPU and TPU have native depthwise convolution kernels, so there ``impl="auto"`` (the
    default; ``model.depthwise_impl``) uses the grouped convolution; ``"shifted"`` / ``"grouped"`` force one.
    ``(N, H, W, C) -> (N, floor((H + 2p - k) / s) + 1, ..., C)``.
    """

    impl: str = "auto"  # auto | shifted | grouped; set per model by fer_jax.models.compute.configure

    def uses_shifted(self) -> bool:
        """Whether this call computes shifted multiplies (``impl``, and for "auto" the default backend)."""
        if self.impl not in ("auto", "shifted", "grouped"):
            raise ValueError(f"depthwise impl must be auto, shifted or grouped; got {self.impl!r}")
        return self.impl == "shifted" or (self.impl == "auto" and jax.default_backend() == "cpu")

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.uses_shifted():
            return super().__call__(x)
        kh, kw = self.kernel_size
        sh, sw = self.strides
        (pt, pb), (pl, pr) = self.padding
        xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        n, hp, wp, c = xp.shape
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        kernel = self.kernel[...]
        out = None
        for i in range(kh):
            for j in range(kw):
                window = jax.lax.slice(
                    xp, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c), (1, sh, sw, 1)
                )
                term = window * kernel[i, j, 0]
                out = term if out is None else out + term
        if self.bias is not None:
            out = out + self.bias[...]
        return out


class BatchNorm(nnx.Module):
    """``torch.nn.BatchNorm2d`` over the last axis of NHWC input, with real running statistics.

    ``momentum`` uses the flax convention (``running = momentum * running + (1 - momentum) * batch``), i.e.
    ``1 - torch_momentum``; torchvision's default 0.1 is 0.9 here. In training mode
    (``use_running_average=False``, set by ``model.train()``) the batch mean and biased variance normalise
    the input and the running variance is updated with the unbiased variance (``n / (n - 1)``), as torch
    does. Under ``jax.jit`` with a batch sharded over a mesh the reductions are global (synchronised BN).

    State: ``scale`` and ``bias`` (``nnx.Param``, ``(C,)``), ``mean`` and ``var`` (``nnx.BatchStat``).
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-5,
        momentum: float = 0.9,
        use_running_average: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # deterministic init; accepted so every layer has the same signature
        self.num_features = num_features
        self.epsilon = epsilon
        self.momentum = momentum
        self.use_running_average = use_running_average
        # numpy constants: jnp.ones / jnp.zeros run eagerly would compile one program per width
        ones, zeros = np.ones((num_features,), np.float32), np.zeros((num_features,), np.float32)
        self.scale = nnx.Param(jnp.asarray(ones))
        self.bias = nnx.Param(jnp.asarray(zeros))
        self.mean = nnx.BatchStat(jnp.asarray(zeros))
        self.var = nnx.BatchStat(jnp.asarray(ones))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x``: ``(..., C)`` -> same shape."""
        out_dtype = x.dtype
        # statistics and the normalisation in float32 (bfloat16 compute: 8 mantissa bits lose the mean)
        x = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            # two-pass variance: E[x^2] - E[x]^2 loses digits that the 1e-4 parity budget needs
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            n = x.size // x.shape[-1]
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            # set_value, not `[...] =`: the latter probes the tracer's sharding, which costs ~25 ms of
            # tracing per BatchNorm (an error message is built and dropped) and may add a scatter
            self.mean.set_value(m * self.mean[...] + (1.0 - m) * jax.lax.stop_gradient(mean))
            self.var.set_value(m * self.var[...] + (1.0 - m) * jax.lax.stop_gradient(unbiased))
        inv = jax.lax.rsqrt(var + self.epsilon) * self.scale[...].astype(jnp.float32)
        return ((x - mean) * inv + self.bias[...].astype(jnp.float32)).astype(out_dtype)


class ConvNormAct(nnx.List):
    """``torchvision.ops.Conv2dNormActivation``: conv (no bias) -> BatchNorm -> optional activation.

    Items: ``[0]`` the ``nnx.Conv``, ``[1]`` the ``BatchNorm`` (the activation has no state, as torchvision's
    index 2). ``(N, H, W, in) -> (N, floor((H - 1) / stride) + 1, ..., out)`` for odd kernels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "silu",
        bn_epsilon: float = 1e-5,
        bn_momentum: float = 0.9,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            [
                conv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups, rngs=rngs),
                BatchNorm(out_channels, epsilon=bn_epsilon, momentum=bn_momentum),
            ]
        )
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self[1](self[0](x))
        return x if self.activation is None else ACTIVATIONS[self.activation](x)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """``(N, H, W, C) -> (N, C)``: ``nn.AdaptiveAvgPool2d(1)`` followed by ``flatten(1)``."""
    return jnp.mean(x, axis=(1, 2))


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """``nn.MaxPool2d(3, stride=2, padding=1)``: the padding never wins the max (it is -inf)."""
    return nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
