"""ResNet-18/34 port: torchvision shapes and parameter counts, torch-exact BatchNorm, golden parity."""

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
from fer_jax.models.layers import BatchNorm  # noqa: E402
from fer_jax.models.resnet import resnet18, resnet34  # noqa: E402

# one XLA program per (model, mode, shape): about half the CPU of running the ~700 ops eagerly; in train
# mode nnx.jit writes the updated BatchNorm statistics back into the module
forward = nnx.jit(lambda model, x: model(x))


def _abstract(factory, **kwargs):
    return nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0), **kwargs))


def _shapes(model, size: int, channels: int = 3):
    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    out, stages = nnx.eval_shape(lambda m, x: m(x, return_stages=True), model, x)
    return out.shape, [s.shape[1:3] for s in stages]


@pytest.mark.parametrize(
    "size,stage_sizes",
    # torchvision: conv 7/2 p3, maxpool 3/2 p1, then 3x3/2 p1 per stage: floor((h + 2p - k) / s) + 1
    [(100, [25, 13, 7, 4]), (112, [28, 14, 7, 4]), (224, [56, 28, 14, 7]), (33, [9, 5, 3, 2])],
)
def test_feature_map_sizes_follow_torchvision_padding(size, stage_sizes):
    model = _abstract(resnet18, num_classes=None)
    out, stages = _shapes(model, size)
    assert out == (1, stage_sizes[-1], stage_sizes[-1], 512)
    assert stages == [(s, s) for s in stage_sizes]


def test_parameter_counts_match_torchvision():
    # torchvision's documented num_params for ResNet18_Weights / ResNet34_Weights
    for factory, expected in ((resnet18, 11_689_512), (resnet34, 21_797_672)):
        params = nnx.state(_abstract(factory), nnx.Param)
        assert sum(p.size for p in jax.tree.leaves(params)) == expected


def test_in_channels_and_head_options():
    model = _abstract(resnet18, in_channels=5, num_classes=None)
    assert model.num_features == 512
    assert _shapes(model, 64, channels=5)[0] == (1, 2, 2, 512)
    head = _abstract(resnet18, in_channels=5, num_classes=7)
    logits = nnx.eval_shape(lambda m, x: m(x), head, jax.ShapeDtypeStruct((2, 64, 64, 5), jnp.float32))
    assert logits.shape == (2, 7)
    with pytest.raises(ValueError, match="expected"):
        nnx.eval_shape(lambda m, x: m(x), head, jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))


def test_batchnorm_matches_torch_update_rule():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32) * 2 + 1
    bn = BatchNorm(6, epsilon=1e-5, momentum=0.9)
    bn.scale[...] = jnp.arange(1.0, 7.0)
    y = np.asarray(bn(jnp.asarray(x)))
    # torch.nn.BatchNorm2d: normalise with the biased batch variance, track the unbiased one
    flat = x.reshape(-1, 6).astype(np.float64)
    mean, var_b, var_u = flat.mean(0), flat.var(0), flat.var(0, ddof=1)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var_b + 1e-5) * np.arange(1, 7), atol=1e-5)
    np.testing.assert_allclose(bn.mean[...], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * var_u, rtol=1e-5)
    bn.use_running_average = True
    y_eval = np.asarray(bn(jnp.asarray(x)))
    expected = (x - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var_u + 1e-5) * np.arange(1, 7)
    np.testing.assert_allclose(y_eval, expected, atol=1e-5)


@pytest.fixture(scope="module")
def resnet18_golden(tmp_path_factory):
    return convert_golden("resnet18", tmp_path_factory.mktemp("r18"))


@pytest.mark.parametrize("size", [112, pytest.param(224, marks=pytest.mark.slow)])
def test_resnet18_matches_torchvision_goldens(resnet18_golden, size):
    directory, golden = resnet18_golden
    x = jnp.asarray(golden_images(golden, size))
    model = load_pretrained("resnet18", directory)
    model.eval()
    np.testing.assert_allclose(forward(model, x), golden[f"logits_{size}"], atol=TOLERANCE, rtol=0)
    features = load_pretrained("resnet18", directory, num_classes=None)
    features.eval()
    fmap = forward(features, x)
    side = {112: 4, 224: 7}[size]
    chex.assert_shape(fmap, (2, side, side, 512))
    np.testing.assert_allclose(fmap.mean(axis=(1, 2)), golden[f"pooled_{size}"], atol=TOLERANCE, rtol=0)


def _check_train_mode_against_golden(arch: str, model, golden) -> None:
    """One train-mode forward: pooled features and every stored running statistic as torch's."""
    model.train()
    fmap = forward(model, jnp.asarray(golden_images(golden, 112)))
    np.testing.assert_allclose(fmap.mean(axis=(1, 2)), golden["train_pooled_112"], atol=TOLERANCE, rtol=0)
    entries = {e.torch_key: e for e in key_table(arch, model)}
    checked = 0
    for key in golden:
        if key.startswith("bn/"):
            entry = entries[key[3:]]
            var = model
            for part in entry.nnx_path:
                var = var[part] if isinstance(part, int) else getattr(var, part)
            expected = golden[key]
            np.testing.assert_allclose(
                np.asarray(var[...])[: len(expected)], expected, atol=TOLERANCE, rtol=1e-5
            )
            checked += 1
    assert checked >= 2 * 20


def test_resnet18_train_mode_batchnorm_matches_torchvision(resnet18_golden):
    directory, golden = resnet18_golden
    _check_train_mode_against_golden(
        "resnet18", load_pretrained("resnet18", directory, num_classes=None), golden
    )


@pytest.mark.slow
def test_resnet34_matches_torchvision_goldens(tmp_path):
    directory, golden = convert_golden("resnet34", tmp_path)
    model = load_pretrained("resnet34", directory)
    model.eval()
    x = jnp.asarray(golden_images(golden, 112))
    np.testing.assert_allclose(forward(model, x), golden["logits_112"], atol=TOLERANCE, rtol=0)
    _check_train_mode_against_golden(
        "resnet34", load_pretrained("resnet34", directory, num_classes=None), golden
    )


def test_initialisation_follows_torchvision_and_is_reproducible():
    a = resnet18(num_classes=10, rngs=nnx.Rngs(0))
    b = resnet18(num_classes=10, rngs=nnx.Rngs(0))
    chex.assert_trees_all_equal(nnx.state(a, nnx.Param), nnx.state(b, nnx.Param))
    kernel = np.asarray(a.layer4[0].conv1.kernel[...])  # (3, 3, 256, 512)
    # kaiming_normal_(mode="fan_out"): std sqrt(2 / (3 * 3 * 512))
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (9 * 512)), rtol=0.01)
    assert abs(kernel.mean()) < 1e-3
    fc = np.asarray(a.fc.kernel[...])  # torch nn.Linear: U(-1/sqrt(512), 1/sqrt(512))
    assert np.abs(fc).max() <= 512**-0.5 and np.abs(fc).max() > 0.9 * 512**-0.5
    np.testing.assert_allclose(fc.std(), 512**-0.5 / np.sqrt(3), rtol=0.05)
    assert not np.allclose(kernel, np.asarray(resnet18(rngs=nnx.Rngs(1)).layer4[0].conv1.kernel[...]))


def test_width_scales_every_stage_and_the_feature_size():

    full = resnet18(num_classes=None, rngs=nnx.Rngs(0))
    small = resnet18(num_classes=None, width=16, rngs=nnx.Rngs(0))
    n_full = sum(x.size for x in jax.tree.leaves(nnx.state(full, nnx.Param)))
    n_small = sum(x.size for x in jax.tree.leaves(nnx.state(small, nnx.Param)))
    # conv weights scale with width^2: a quarter of the width is about 1/16 of the parameters
    assert 1 / 20 < n_small / n_full < 1 / 12
    assert small.num_features == 128
    y = small(jnp.zeros((1, 100, 100, 3)))
    assert y.shape == (1, 4, 4, 128)
    with pytest.raises(ValueError):
        resnet18(width=0, rngs=nnx.Rngs(0))
