"""grain pipelines over the fixture shards: batch contract, normalisation, epochs, exact iterator resume,
evaluation padding across processes, and clip-consistent augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from configs.common import base_config
from fer_jax.data import augment as aug
from fer_jax.data import pipeline
from fer_jax.data.manifest import load_manifest
from fer_jax.data.schema import decode_frames
from fer_jax.data.source import ShardSource
from fer_jax.preprocess.landmarks import TEMPLATE_68
from fer_jax.training import device_input

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _config(shards, dataset="dfew", *, frames=8, batch=4, augment=False, workers=0, on_device=False):
    """on_device False: the host normalises (the float32 contract these tests read back to pixels)."""
    c = base_config()
    c.train.normalize_on_device = on_device
    c.data.dataset, c.data.dir = dataset, str(shards)
    c.data.num_frames, c.data.image_size = frames, 64
    c.data.augment, c.data.num_workers = augment, workers
    c.train.batch_size, c.eval.batch_size = batch, batch
    c.seed = 3
    return c


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_dfew_batches_follow_the_contract_and_normalise(dfew_shards):
    c = _config(dfew_shards)
    b = next(pipeline.make_train_iterator(c))
    assert set(b) == {"frames", "landmarks", "label", "mask"}
    assert b["frames"].shape == (4, 8, 64, 64, 3) and b["frames"].dtype == np.float32
    # train.normalize_on_device: the stored pixels leave the host as they are
    raw = next(iter(pipeline.make_eval_iterator(_config(dfew_shards, on_device=True), "test", batch_size=2)))
    assert raw["frames"].dtype == np.uint8
    np.testing.assert_array_equal(
        raw["frames"][0], decode_frames(ShardSource(dfew_shards, "test")[int(raw["index"][0])]["frames"])
    )
    assert b["landmarks"].shape == (4, 8, 68, 2) and b["label"].dtype == np.int32 and b["mask"].all()
    ev = next(iter(pipeline.make_eval_iterator(c, "test", batch_size=2)))
    src = ShardSource(dfew_shards, "test")
    for row in range(2):
        rec = src[int(ev["index"][row])]
        pixels = (ev["frames"][row] * IMAGENET_STD + IMAGENET_MEAN) * 255.0
        np.testing.assert_allclose(pixels, decode_frames(rec["frames"]), atol=1e-3)
        np.testing.assert_array_equal(ev["landmarks"][row], rec["landmarks"])
        assert ev["label"][row] == rec["label"]


def test_see_batches_take_first_and_last_of_the_stride4_subclip(see_shards):
    c = _config(see_shards, "see", frames=2)
    b = next(pipeline.make_train_iterator(c))
    assert set(b) == {"rgb", "event", "label", "lighting", "mask"}
    assert b["rgb"].shape == b["event"].shape == (4, 2, 64, 64, 3)
    ev = next(iter(pipeline.make_eval_iterator(c, "test", batch_size=2)))
    rec = ShardSource(see_shards, "test")[int(ev["index"][0])]
    # K = 8 stored frames, every 4th from offset 0 -> frames 0 and 4; SEE's scalar statistics
    rgb = (ev["rgb"][0] * 0.118931554 + 0.22616537) * 255.0
    np.testing.assert_allclose(rgb, decode_frames(rec["rgb"], [0, 4]), atol=1e-3)
    event = (ev["event"][0] * 0.06928615 + 0.504413) * 255.0
    np.testing.assert_allclose(event, decode_frames(rec["event"], [0, 4]), atol=1e-3)
    assert ev["lighting"][0] == rec["lighting"]


def test_each_epoch_sees_every_training_example_once_in_a_new_order(dfew_shards):
    n = load_manifest(dfew_shards)["num_examples"]["train"]
    it = pipeline.make_train_iterator(_config(dfew_shards, batch=1))
    epochs = [[next(it) for _ in range(n)] for _ in range(2)]
    fingerprints = [[float(b["frames"].sum()) for b in e] for e in epochs]
    assert len(set(fingerprints[0])) == n  # n distinct clips
    assert sorted(fingerprints[0]) == pytest.approx(sorted(fingerprints[1]))
    assert fingerprints[0] != fingerprints[1]  # reshuffled
    counts = np.bincount([int(b["label"][0]) for b in epochs[0]], minlength=7)
    assert counts.tolist() == load_manifest(dfew_shards)["class_counts"]["train"]


def _resume_check(config):
    it = pipeline.make_train_iterator(config)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    fresh = pipeline.make_train_iterator(config)
    fresh.set_state(state)
    assert all(_equal(e, next(fresh)) for e in expected)


def test_iterator_state_restores_the_exact_next_batch(dfew_shards):
    _resume_check(_config(dfew_shards, augment=True))


@pytest.mark.slow
def test_iterator_state_restores_the_exact_next_batch_with_two_workers(see_shards):
    _resume_check(_config(see_shards, "see", frames=2, augment=True, workers=2))


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_evaluation_counts_every_example_once_across_processes(see_shards, process_count):
    c = _config(see_shards, "see", frames=2)
    n = pipeline.num_examples(c, "test")
    seen, lengths = [], set()
    for p in range(process_count):
        loader = pipeline.make_eval_iterator(
            c, "test", batch_size=2 * process_count, process_index=p, process_count=process_count
        )
        batches = list(loader)
        lengths.add(len(batches))
        for b in batches:
            assert b["mask"].shape == (2,)
            seen += b["index"][b["mask"]].tolist()
    assert len(lengths) == 1  # every process runs the same number of steps
    assert sorted(seen) == list(range(n))


def test_stochastic_evaluation_is_seeded(see_shards):
    c = _config(see_shards, "see", frames=2)

    def run(seed):
        return [
            b["rgb"] for b in pipeline.make_eval_iterator(c, "test", batch_size=7, seed=seed, augment=True)
        ]

    a, b, other = run(1), run(1), run(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, other))


def test_bad_configs_fail_with_a_reason(dfew_shards, see_shards, tmp_path):
    c = _config(dfew_shards)
    c.data.image_size = 112
    with pytest.raises(ValueError, match="image_size"):
        pipeline.make_train_iterator(c)
    with pytest.raises(ValueError, match="holds 'see'"):
        pipeline.make_train_iterator(_config(see_shards, "dfew"))
    with pytest.raises(ValueError, match="multiple"):
        pipeline.make_train_iterator(_config(dfew_shards, batch=3), process_index=0, process_count=2)
    with pytest.raises(ValueError, match="not a finished build"):
        tmp_path.joinpath("x").mkdir()
        pipeline.make_train_iterator(_config(tmp_path / "x"))
    with pytest.raises(ValueError, match="no split"):
        pipeline.num_examples(_config(dfew_shards), "validation")


# ---- augmentation ----------------------------------------------------------------------------------


def test_augmentation_is_the_same_for_every_frame_of_a_clip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    clip = np.stack([frame] * 4)
    for seed in range(10):
        p = aug.sample_params(np.random.default_rng(seed), 32)
        out = aug.photometric(aug.geometric(clip, p), p)
        for t in range(1, 4):
            np.testing.assert_array_equal(out[t], out[0])


def test_landmarks_follow_the_geometric_augmentation():
    size = 64
    img = np.zeros((1, size, size, 1), np.float32)
    img[0, 20, 40, 0] = 1.0  # a point at pixel (x=40, y=20)
    lm = np.broadcast_to(np.array([40.5, 20.5]) / size, (1, 68, 2)).astype(np.float32)
    for seed in range(10):
        p = aug.sample_params(np.random.default_rng(seed), size)
        warped = aug.geometric(img, p)[0, :, :, 0]
        y, x = np.unravel_index(np.argmax(warped), warped.shape)
        got = aug.geometric_landmarks(lm, p, size)[0, 0] * size - 0.5
        assert abs(got[0] - x) <= 1.0 and abs(got[1] - y) <= 1.0, (seed, got, (x, y))


def test_flip_keeps_each_landmark_on_its_facial_part():
    p = aug.ClipParams(True, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 0.0, 1.0, 1.0, np.ones(3), "none", 0.0, 0)
    out = aug.geometric_landmarks(TEMPLATE_68[None], p, 64)[0]
    # the template is symmetric: after the flip index 36 (subject's right eye corner) is still on the left
    np.testing.assert_allclose(out, TEMPLATE_68, atol=1.0 / 64)


def test_event_tensors_get_geometry_only(see_shards):
    from fer_jax.data.pipeline import _Spec, _to_model_inputs

    rec = ShardSource(see_shards, "train")[0]
    spec = _Spec("see", 2, 64, augment=True)
    out = _to_model_inputs(dict(rec), spec, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    p = aug.sample_params(rng, 64)  # the same first draw the map made
    idx = pipeline.sample_indices(len(rec["rgb"]), 2, mode="stride4", rng=rng)
    expected = aug.geometric(decode_frames(rec["event"], idx), p)
    event = (out["event"] * 0.06928615 + 0.504413) * 255.0
    np.testing.assert_allclose(event, expected, atol=1e-3)


def test_prepare_example_matches_the_evaluation_batches(see_shards):
    c = _config(see_shards, "see", frames=2)
    manifest = load_manifest(see_shards)
    ev = next(iter(pipeline.make_eval_iterator(c, "test", batch_size=2)))
    src = ShardSource(see_shards, "test")
    for row in range(2):
        ex = pipeline.prepare_example(dict(src[int(ev["index"][row])]), c, manifest)
        for k in ("rgb", "event", "label", "lighting"):
            np.testing.assert_array_equal(ex[k], ev[k][row])


def test_see_batches_fit_the_mco_e_net_inputs(see_shards):
    from configs import see
    from fer_jax.models import registry

    c = see.get_config()
    c.data.dir, c.data.image_size, c.data.num_workers = str(see_shards), 64, 0
    c.train.batch_size = 2
    b = next(pipeline.make_train_iterator(c))
    assert b["rgb"].dtype == b["event"].dtype == np.uint8  # train.normalize_on_device: the step normalises
    b = device_input.from_manifest(c, load_manifest(see_shards))(b)
    for name, (shape, dtype) in registry.input_spec(c).items():
        assert b[name].shape == (2, *shape) and b[name].dtype == dtype, name


def test_dfew_batches_fit_the_mambafer_inputs(dfew_shards):
    from fer_jax.models import registry

    c = _config(dfew_shards, batch=2, on_device=True)
    c.model.name = "mambafer"
    b = device_input.from_manifest(c, load_manifest(dfew_shards))(next(pipeline.make_train_iterator(c)))
    for name, (shape, dtype) in registry.input_spec(c).items():
        assert b[name].shape == (2, *shape) and b[name].dtype == dtype, name
