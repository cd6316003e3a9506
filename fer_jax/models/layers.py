"""Building blocks shared by the torchvision ports (ResNet, EfficientNetV2): conv, BatchNorm, conv-BN-act.

Everything is NHWC float32. The helpers reproduce torchvision's arithmetic exactly so that converted
torchvision weights give the same outputs:

- ``conv2d`` pads symmetrically by ``(kernel - 1) // 2`` like ``nn.Conv2d(padding=k // 2)``, so odd input
  sizes give torchvision's (floor) output sizes, not XLA's "SAME" (ceil) sizes;
- ``BatchNorm`` normalises with the biased batch variance but updates ``var`` with the unbiased one,
  exactly as ``torch.nn.BatchNorm2d`` does (``flax.nnx.BatchNorm`` stores the biased one);
- ``ConvNormAct`` is ``torchvision.ops.Conv2dNormActivation``; it is an ``nnx.List`` so that its state
  paths (``0.kernel``, ``1.scale`` ...) mirror torchvision's state-dict keys (``0.weight``, ``1.weight``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out", nonlinearity="relu")
CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

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
    return nnx.Conv(
        in_channels,
        out_channels,
        kernel_size=(kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=CONV_INIT,
        rngs=rngs,
    )


def linear(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """``nn.Linear(in, out)``; kernel ``(in, out)`` (torch's weight transposed), torch's default init.

    torch draws weight and bias from U(-1/sqrt(in), 1/sqrt(in)); variance_scaling(1/3, fan_in, uniform) is
    the same distribution for the kernel.
    """
    bound = 1.0 / in_features**0.5

    def bias_init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=bias_init,
        rngs=rngs,
    )


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
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x``: ``(..., C)`` -> same shape."""
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
            self.mean[...] = m * self.mean[...] + (1.0 - m) * jax.lax.stop_gradient(mean)
            self.var[...] = m * self.var[...] + (1.0 - m) * jax.lax.stop_gradient(unbiased)
        inv = jax.lax.rsqrt(var + self.epsilon) * self.scale[...]
        return (x - mean) * inv + self.bias[...]


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
