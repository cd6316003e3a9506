"""Per-backend choices: depthwise convolution as shifted multiplies or a grouped convolution, and the
selective scan's ``auto`` method; each chosen per backend and overridable from ``config.model``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import ssm
from fer_jax.models.efficientnet_v2 import efficientnet_v2_s
from fer_jax.models.layers import DepthwiseConv, conv2d
from fer_jax.models.mambafer import MambaFER


def _conv(kernel: int, stride: int, impl: str) -> DepthwiseConv:
    conv = conv2d(12, 12, kernel, stride=stride, groups=12, use_bias=True, rngs=nnx.Rngs(0))
    assert isinstance(conv, DepthwiseConv)
    conv.bias.set_value(jnp.linspace(-1.0, 1.0, 12))
    conv.impl = impl
    return conv


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 9), (3, 2, 9), (5, 2, 10), (5, 1, 6)])
def test_shifted_and_grouped_depthwise_agree_forward_and_gradient(kernel, stride, size):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, size, size, 12)), jnp.float32)
    results = {}
    for impl in ("shifted", "grouped"):
        conv = _conv(kernel, stride, impl)

        def loss(c, x):
            return jnp.sum(jnp.sin(c(x)))

        y = conv(x)
        (gm, gx) = nnx.grad(loss, argnums=(0, 1))(conv, x)
        results[impl] = (y, gm["kernel"][...], gm["bias"][...], gx)
    for a, b in zip(results["shifted"], results["grouped"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    assert results["shifted"][0].shape == (
        2,
        (size + 2 * ((kernel - 1) // 2) - kernel) // stride + 1,
        *results["shifted"][0].shape[2:],
    )


def test_auto_depthwise_is_shifted_on_cpu_only():
    conv = _conv(3, 1, "auto")
    assert conv.uses_shifted() == (jax.default_backend() == "cpu")
    assert _conv(3, 1, "grouped").uses_shifted() is False
    assert _conv(3, 1, "shifted").uses_shifted() is True


def test_model_depthwise_impl_reaches_every_depthwise_conv():
    for impl in ("grouped", "shifted", "auto"):
        model = nnx.eval_shape(
            lambda impl=impl: MambaFER(backbone_width=0.25, backbone_depth=0.35, d_model=16, mhsa_heads=2,
                                       mlp_dims=(8,), depthwise_impl=impl, rngs=nnx.Rngs(0))
        )  # fmt: skip
        convs = [m for _, m in nnx.iter_modules(model) if isinstance(m, DepthwiseConv)]
        assert convs and {c.impl for c in convs} == {impl}


def test_efficientnet_grouped_equals_shifted_whole_backbone():
    net = efficientnet_v2_s(num_classes=None, width_mult=0.25, depth_mult=0.35, rngs=nnx.Rngs(0))
    net.eval()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 40, 40, 3)), jnp.float32)
    outs = {}
    for impl in ("shifted", "grouped"):
        for _, m in nnx.iter_modules(net):
            if isinstance(m, DepthwiseConv):
                m.impl = impl
        outs[impl] = np.asarray(nnx.jit(lambda n, x: n(x))(net, x))
    np.testing.assert_allclose(outs["shifted"], outs["grouped"], atol=1e-5, rtol=1e-5)


def test_scan_auto_method_is_per_backend_and_overridable():
    assert ssm.resolve_method("auto") == ssm.AUTO_METHOD[jax.default_backend()]
    assert ssm.AUTO_METHOD["cpu"] == "sequential"  # today's CPU choice
    assert ssm.AUTO_METHOD["gpu"] == ssm.AUTO_METHOD["tpu"] == "chunked"
    for method in ssm.METHODS:
        assert ssm.resolve_method(method) == method
    model = nnx.eval_shape(
        lambda: MambaFER(backbone_width=0.25, backbone_depth=0.35, d_model=16, mhsa_heads=2, mlp_dims=(8,),
                         scan_method="associative", rngs=nnx.Rngs(0))
    )  # fmt: skip
    methods = {getattr(m, "scan_method", None) for _, m in nnx.iter_modules(model)} - {None}
    assert methods == {"associative"}
