"""Normalisation inside the jitted step (``fer_jax.training.device_input``): the same batch normalised on
the host and on the device gives the same model inputs (<= 1e-6), augmented training batches included;
the uint8 batch is what leaves the host; float frames pass through; float voxel grids use the manifest's
statistics."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from configs.common import base_config
from fer_jax.data import normalize, pipeline
from fer_jax.data.manifest import load_manifest
from fer_jax.training import device_input


def _config(shards, dataset, *, on_device, augment=False, frames=8):
    c = base_config()
    c.data.dataset, c.data.dir = dataset, str(shards)
    c.data.num_frames, c.data.image_size, c.data.augment = frames, 64, augment
    c.train.batch_size = c.eval.batch_size = 4
    c.train.normalize_on_device = on_device
    c.seed = 7
    return c


def _device_inputs(config, batch):
    norm = device_input.from_manifest(config, load_manifest(config.data.dir))
    return jax.tree.map(np.asarray, jax.jit(norm)({k: v for k, v in batch.items() if k != "id"}))


@pytest.mark.parametrize(
    "dataset, keys, augment",
    [("dfew", ("frames",), False), ("see", ("rgb", "event"), False), ("see", ("rgb", "event"), True)],
)
def test_device_normalisation_matches_the_host(dataset, keys, augment, request):
    shards = request.getfixturevalue(f"{dataset}_shards")
    frames = 8 if dataset == "dfew" else 2
    host_c = _config(shards, dataset, on_device=False, augment=augment, frames=frames)
    dev_c = _config(shards, dataset, on_device=True, augment=augment, frames=frames)
    if augment:  # the same seeds draw the same augmentation either way
        host, raw = next(pipeline.make_train_iterator(host_c)), next(pipeline.make_train_iterator(dev_c))
    else:
        host = next(iter(pipeline.make_eval_iterator(host_c, "test")))
        raw = next(iter(pipeline.make_eval_iterator(dev_c, "test")))
    for k in keys:
        assert raw[k].dtype == np.uint8 and host[k].dtype == np.float32, k  # a quarter of the bytes cross
    dev = _device_inputs(dev_c, raw)
    for k in keys:
        assert dev[k].dtype == np.float32
        np.testing.assert_allclose(dev[k], host[k], atol=1e-6, rtol=0, err_msg=k)
    for k in set(host) - set(keys) - {"id"}:  # labels, masks, landmarks, lighting: untouched
        np.testing.assert_array_equal(dev[k], host[k], err_msg=k)


def test_float_voxel_grids_use_the_manifest_statistics():
    rng = np.random.default_rng(0)
    voxels = rng.normal(0.3, 2.0, size=(2, 3, 8, 8, 5)).astype(np.float16)  # as the shards store them
    norm = device_input.DeviceNormalize(event_mean=0.25, event_std=1.7)
    dev = np.asarray(jax.jit(norm)({"event": voxels})["event"])
    np.testing.assert_allclose(dev, normalize.see_events(voxels, 0.25, 1.7), atol=1e-6, rtol=0)
    # without statistics: identity (in float32)
    plain = np.asarray(device_input.DeviceNormalize()({"event": voxels})["event"])
    np.testing.assert_array_equal(plain, voxels.astype(np.float32))


def test_host_normalised_frames_pass_through():
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4, 3)).astype(np.float32)
    out = device_input.DeviceNormalize()({"frames": x, "rgb": x, "x": x})
    for k in ("frames", "rgb", "x"):
        np.testing.assert_array_equal(np.asarray(out[k]), x)


def test_the_switch_turns_device_normalisation_off():
    c = base_config()
    assert device_input.from_manifest(c, {}) is not None
    c.train.normalize_on_device = False
    assert device_input.from_manifest(c, {}) is None
    del c.train["normalize_on_device"]  # a run written before the switch: the device path
    assert device_input.on_device(c)
