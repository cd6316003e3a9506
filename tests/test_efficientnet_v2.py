"""EfficientNetV2-S port: torchvision's table and sizes, stochastic depth, golden parity (112 fast, 224 slow)."""

from __future__ import annotations

import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from parity import TOLERANCE, convert_golden, golden_images  # noqa: E402

from fer_jax.convert import load_pretrained  # noqa: E402
from fer_jax.convert.tables import key_table  # noqa: E402
from fer_jax.models.efficientnet_v2 import (  # noqa: E402
    MBConv,
    StochasticDepth,
    efficientnet_v2_l,
    efficientnet_v2_m,
    efficientnet_v2_s,
    make_divisible,
)
from fer_jax.models.layers import DepthwiseConv, conv2d  # noqa: E402

# one XLA program per (model, mode, shape): about half the CPU of running the ~700 ops eagerly; in train
# mode nnx.jit writes the updated BatchNorm statistics back into the module
forward = nnx.jit(lambda model, x: model(x))


def _abstract(**kwargs):
    return nnx.eval_shape(lambda: efficientnet_v2_s(rngs=nnx.Rngs(0), **kwargs))


@pytest.fixture(scope="module")
def features_model():
    return _abstract(num_classes=None)


def _stage_shapes(model, size: int):
    x = jax.ShapeDtypeStruct((1, size, size, model.in_channels), jnp.float32)
    out, stages = nnx.eval_shape(lambda m, x: m(x, return_stages=True), model, x)
    return out.shape, [s.shape[1:] for s in stages]


def test_parameter_count_matches_torchvision(features_model):
    # torchvision's documented num_params for EfficientNet_V2_S_Weights, less the 1280 -> 1000 head
    params = nnx.state(features_model, nnx.Param)
    assert sum(p.size for p in jax.tree.leaves(params)) == 21_458_488 - (1280 * 1000 + 1000)


@pytest.mark.slow
def test_m_and_l_parameter_counts_match_torchvision():
    for factory, expected, dropout in (
        (efficientnet_v2_m, 54_139_356, 0.3),
        (efficientnet_v2_l, 118_515_272, 0.4),
    ):
        model = nnx.eval_shape(lambda f=factory: f(rngs=nnx.Rngs(0)))
        assert sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == expected
        assert model.dropout.rate == dropout


@pytest.mark.parametrize("size,final", [(112, 4), (101, 4), (65, 3)])
def test_stage_sizes_follow_torchvision_padding(features_model, size, final):
    out, stages = _stage_shapes(features_model, size)
    assert out == (1, final, final, 1280)
    # five stride-2 convs with padding 1 and kernel 3: h -> floor((h - 1) / 2) + 1
    sides = [size]
    for _ in range(5):
        sides.append((sides[-1] - 1) // 2 + 1)
    expected = [
        (sides[1], 24),
        (sides[2], 48),
        (sides[3], 64),
        (sides[4], 128),
        (sides[4], 160),
        (sides[5], 256),
    ]
    assert stages == [(h, h, c) for h, c in expected]


def test_make_divisible_matches_torchvision_values():
    # values of torchvision.models._utils._make_divisible(v, 8)
    assert [make_divisible(v) for v in (24 * 0.25, 1280 * 0.5, 3.0, 37.0, 44.0, 100.0)] == [
        8,
        640,
        8,
        40,
        48,
        104,
    ]


def test_multipliers_scale_width_and_depth():
    model = _abstract(num_classes=None, width_mult=0.25, depth_mult=0.25, in_channels=2)
    assert model.num_features == 320
    # ceil(n * 0.25) blocks per stage of (2, 4, 4, 6, 9, 15)
    assert [len(stage) for stage in model.features[1:-1]] == [1, 1, 1, 2, 3, 4]
    out, stages = _stage_shapes(model, 64)
    assert out == (1, 2, 2, 320) and [s[-1] for s in stages] == [8, 16, 16, 32, 40, 64]


def test_stochastic_depth_probabilities_grow_linearly_like_torchvision(features_model):
    model = features_model  # default stochastic_depth_prob=0.2
    rates = [block.stochastic_depth.rate for stage in model.features[1:-1] for block in stage]
    assert len(rates) == 40
    np.testing.assert_allclose(rates, 0.2 * np.arange(40) / 40)


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 7), (3, 2, 9), (5, 2, 8)])
def test_depthwise_conv_equals_grouped_convolution(kernel, stride, size):
    conv = conv2d(6, 6, kernel, stride=stride, groups=6, rngs=nnx.Rngs(0))
    assert isinstance(conv, DepthwiseConv)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 6))
    reference = jax.lax.conv_general_dilated(
        x,
        conv.kernel[...],
        (stride, stride),
        [((kernel - 1) // 2,) * 2] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=6,
    )
    chex.assert_trees_all_close(conv(x), reference, atol=1e-5)


def test_stochastic_depth_drops_whole_rows_in_training_only():
    sd = StochasticDepth(0.5, rngs=nnx.Rngs(dropout=3))
    x = jnp.ones((256, 2, 3, 4))
    y = np.asarray(sd(x))
    per_row = y.reshape(256, -1)
    # each sample is either dropped (0) or kept and scaled by 1 / (1 - p) = 2, as a whole
    assert set(np.unique(per_row)) <= {0.0, 2.0}
    assert np.all(per_row.min(axis=1) == per_row.max(axis=1))
    kept = (per_row[:, 0] > 0).mean()
    assert 0.35 < kept < 0.65  # Binomial(256, 0.5): 5 sigma is +-0.16
    sd.eval()
    chex.assert_trees_all_equal(sd(x), x)


def test_residual_block_drops_its_branch_per_sample():
    block = MBConv(False, 4, 3, 1, 8, 8, sd_prob=0.5, rngs=nnx.Rngs(0, dropout=1))
    x = jax.random.normal(jax.random.key(0), (64, 5, 5, 8))
    block.train()
    y = np.asarray(forward(block, x))
    dropped = np.all(y == np.asarray(x), axis=(1, 2, 3))  # a dropped residual branch leaves the input
    assert 10 < dropped.sum() < 54  # Binomial(64, 0.5)
    # the running statistics were updated inside the jitted call (they start at 0 / 1)
    assert np.abs(np.asarray(block.block[0][1].mean[...])).max() > 1e-3
    # a training step reaches every parameter with a finite gradient
    grads = nnx.jit(nnx.grad(lambda b: jnp.mean(b(x) ** 2)))(block)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in leaves)
    block.eval()
    y_eval = np.asarray(forward(block, x))
    assert not np.any(np.all(y_eval == np.asarray(x), axis=(1, 2, 3)))
    chex.assert_trees_all_close(forward(block, x), y_eval)


@pytest.fixture(scope="module")
def effnet_golden(tmp_path_factory):
    return convert_golden("efficientnet_v2_s", tmp_path_factory.mktemp("effnet"))


def test_logits_match_torchvision_goldens_112(effnet_golden):
    # compiling the full network costs ~4 s of CPU: the fast test checks the logits only
    directory, golden = effnet_golden
    model = load_pretrained("efficientnet_v2_s", directory)
    model.eval()
    np.testing.assert_allclose(
        forward(model, jnp.asarray(golden_images(golden, 112))), golden["logits_112"], atol=TOLERANCE, rtol=0
    )


@pytest.mark.slow
def test_matches_torchvision_goldens_224(effnet_golden):
    directory, golden = effnet_golden
    x = jnp.asarray(golden_images(golden, 224))
    model = load_pretrained("efficientnet_v2_s", directory)
    model.eval()
    np.testing.assert_allclose(forward(model, x), golden["logits_224"], atol=TOLERANCE, rtol=0)
    features = load_pretrained("efficientnet_v2_s", directory, num_classes=None)
    features.eval()
    fmap = forward(features, x)
    chex.assert_shape(fmap, (2, 7, 7, 1280))
    np.testing.assert_allclose(fmap.mean(axis=(1, 2)), golden["pooled_224"], atol=TOLERANCE, rtol=0)


@pytest.mark.slow  # the fast BatchNorm train-mode check is the ResNet-18 one (same BatchNorm class)
def test_train_mode_batchnorm_matches_torchvision(effnet_golden):
    directory, golden = effnet_golden
    model = load_pretrained("efficientnet_v2_s", directory, num_classes=None)
    model.set_attributes(StochasticDepth, rate=0.0)  # the golden was made with stochastic_depth_prob=0
    model.train()
    fmap = forward(model, jnp.asarray(golden_images(golden, 112)))
    np.testing.assert_allclose(fmap.mean(axis=(1, 2)), golden["train_pooled_112"], atol=TOLERANCE, rtol=0)
    entries = {e.torch_key: e for e in key_table("efficientnet_v2_s", model)}
    bn_keys = [k for k in golden if k.startswith("bn/")]
    assert len(bn_keys) > 200
    for key in bn_keys:
        var = model
        for part in entries[key[3:]].nnx_path:
            var = var[part] if isinstance(part, int) else getattr(var, part)
        np.testing.assert_allclose(
            np.asarray(var[...])[:8], golden[key], atol=TOLERANCE, rtol=1e-5, err_msg=key
        )
