"""The authors' SEE input path (``data.see_sampling = "authors"``): every 4th raw frame from a random
offset in 0..4, a random window of 4, its first and last frame: 12 raw frames apart. Checked on a
synthetic sequence whose frame index is written into its pixels, through the pipeline's transform."""

import numpy as np
import pytest

from configs import demo_see, see_reference
from fer_jax.data import normalize, pipeline, see_sampling

SIZE = 8


def _record(n: int) -> dict:
    # frame i is the constant image i (RGB) and 200 - i (events): the index reads back from any pixel
    idx = np.arange(n, dtype=np.uint8)[:, None, None, None]
    rgb = np.broadcast_to(idx, (n, SIZE, SIZE, 3)).copy()
    event = np.broadcast_to(200 - idx, (n, SIZE, SIZE, 3)).copy()
    return {"rgb": rgb, "event": event, "label": 3, "lighting": 1}


def _manifest(frames: int) -> dict:
    return {"dataset": "see", "preprocessing": {"frames": frames, "size": SIZE}, "normalization": {}}


def _config(base=see_reference):
    c = base.get_config()
    c.data.image_size = SIZE
    c.data.image_width = 0  # square frames (see_reference's default is the authors' 100 x 133)
    c.data.dir = "/shards/see"
    c.train.normalize_on_device = False  # normalised frames, as _read_rgb_index reads them back
    return c


def _read_rgb_index(x: np.ndarray) -> np.ndarray:
    """Normalised frames ``(m, S, S, 3)`` -> the frame index each one shows."""
    raw = (x * normalize.SEE_FRAME_STD + normalize.SEE_FRAME_MEAN) * 255.0
    assert np.ptp(raw, axis=(1, 2, 3)).max() < 1e-3  # constant frames: no augmentation touched them
    return np.rint(raw[:, 0, 0, 0]).astype(int)


def test_authors_first_and_last_frames_are_12_raw_frames_apart():
    n = 60
    spec = pipeline._spec(_config(), _manifest(0), augment=False)
    firsts = set()
    for seed in range(200):
        out = pipeline._to_model_inputs(_record(n), spec, np.random.default_rng(seed))
        first, last = _read_rgb_index(out["rgb"])
        assert last - first == 12, (seed, first, last)
        firsts.add(first)
        # the events come from the same two frames (a stored array, not JPEGs, passes as voxel values)
        np.testing.assert_array_equal(out["event"][:, 0, 0, 0], [200 - first, 200 - last])
    # a random position: offsets 0..4 (5 values, randint's ends included) and windows over the sequence;
    # their "- 1" never picks the last window: with n = 60 the subsampled clip has 15 or 14 frames
    offsets = {f % 4 for f in firsts}
    assert offsets == {0, 1, 2, 3} and 0 in firsts and 4 in firsts
    assert max(firsts) <= 4 + 4 * (15 - 4 - 1) and len(firsts) > 20


def test_authors_window_matches_their_transforms_on_short_sequences():
    # 18 frames (SEE's shortest): offset 4 leaves [4, 8, 12, 16], so the window is all of it
    rng = np.random.default_rng(0)
    for _ in range(100):
        w = see_sampling.authors_window(18, rng)
        assert len(w) == 4 and np.all(np.diff(w) == 4) and w[0] <= 4
    # too short for 4 subsampled frames: loop padding, as their LoopPadding
    np.testing.assert_array_equal(see_sampling.authors_window(6, None), [0, 4, 0, 4])
    np.testing.assert_array_equal(see_sampling.authors_indices(60, 2, None), [0, 12])


def test_authors_sampling_refuses_shards_without_every_frame():
    with pytest.raises(ValueError, match="--frames 0") as err:
        pipeline._spec(_config(), _manifest(16), augment=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="see_sampling must be one of"):
        c = _config()
        c.data.see_sampling = "every4"
        pipeline._spec(c, _manifest(0), augment=False)


def test_demo_see_keeps_the_stored_frame_path():
    c = _config(demo_see)
    assert c.data.get("see_sampling", "stride4") == "stride4" and c.data.augment is False
    spec = pipeline._spec(c, _manifest(16), augment=False)
    out = pipeline._to_model_inputs(_record(16), spec, None)
    np.testing.assert_array_equal(_read_rgb_index(out["rgb"]), [0, 12])  # stored frames 0 and 12
