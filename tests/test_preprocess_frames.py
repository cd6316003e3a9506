"""Frame sampling, natural sort and clip reading (folders, videos, broken files)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer_jax.preprocess.frames import natural_key, sample_indices
from fer_jax.preprocess.video import decode_image, read_frames


def test_uniform_sampling_takes_segment_centres():
    # 10 frames in 4 segments of 2.5 frames: centres at 1.25, 3.75, 6.25, 8.75
    np.testing.assert_array_equal(sample_indices(10, 4), [1, 3, 6, 8])
    np.testing.assert_array_equal(sample_indices(16, 16), np.arange(16))


def test_short_clip_repeats_frames_in_order():
    idx = sample_indices(5, 16)
    assert len(idx) == 16 and set(idx.tolist()) == set(range(5))
    assert np.all(np.diff(idx) >= 0)
    # centres (i + 0.5) * 5 / 16 floor to 0,0,0,1,1,1,2,2,2,2,3,3,3,4,4,4
    np.testing.assert_array_equal(np.bincount(idx), [3, 3, 4, 3, 3])


def test_random_sampling_stays_in_its_segment():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sample_indices(40, 8, mode="random", rng=rng)
        np.testing.assert_array_equal(idx // 5, np.arange(8))


def test_stride4_takes_first_and_last_of_the_subclip():
    np.testing.assert_array_equal(sample_indices(16, 2, mode="stride4"), [0, 12])
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(40):
        a, b = sample_indices(16, 2, mode="stride4", rng=rng)
        assert a in range(4) and (b - a) % 4 == 0 and b + 4 > 15
        seen.add(int(a))
    assert seen == {0, 1, 2, 3}


@pytest.mark.parametrize("args", [(0, 4), (5, 0)])
def test_sampling_rejects_empty_requests(args):
    with pytest.raises(ValueError):
        sample_indices(*args)


def test_sampling_needs_rng_for_random_mode():
    with pytest.raises(ValueError, match="rng"):
        sample_indices(10, 4, mode="random")


def test_natural_sort():
    names = ["10.jpg", "2.jpg", "1.jpg", "1_10.jpg", "1_2.jpg"]
    assert sorted(names, key=natural_key) == ["1.jpg", "1_2.jpg", "1_10.jpg", "2.jpg", "10.jpg"]


def _write_numbered_frames(folder, n):
    folder.mkdir()
    for i in range(1, n + 1):
        img = np.full((16, 16, 3), i * 10, np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), img)


def test_read_folder_sorts_naturally_and_subsamples(tmp_path):
    _write_numbered_frames(tmp_path / "clip", 12)
    frames = read_frames(tmp_path / "clip")
    assert [int(f[0, 0, 0]) for f in frames] == [10 * i for i in range(1, 13)]
    sub = read_frames(tmp_path / "clip", num_frames=4)
    expected = [10 * (i + 1) for i in sample_indices(12, 4)]
    assert [int(f[0, 0, 0]) for f in sub] == expected


def test_read_video_matches_frames(tmp_path):
    path = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 32))
    for i in range(10):
        vw.write(np.full((32, 32, 3), 20 * i, np.uint8))
    vw.release()
    frames = read_frames(path)
    assert len(frames) == 10
    np.testing.assert_allclose([f.mean() for f in frames], [20 * i for i in range(10)], atol=3)
    sub = read_frames(path, num_frames=3)
    np.testing.assert_allclose([f.mean() for f in sub], [20 * i for i in sample_indices(10, 3)], atol=3)


def test_bad_inputs_raise_one_line_value_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    good = cv2.imencode(".jpg", noise)[1].tobytes()
    # cut inside the entropy-coded data (older libjpeg builds return a grey-filled image for this)
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) - 200])
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    cases = {
        tmp_path / "empty": "no image files",
        tmp_path / "missing": "no such",
        tmp_path / "trunc.jpg": "truncated JPEG|unreadable image",
        tmp_path / "junk.mp4": "video",
    }
    for path, msg in cases.items():
        with pytest.raises(ValueError, match=msg) as e:
            read_frames(path)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unreadable image"):
        decode_image(b"\x00" * 100, "x.jpg")


def test_frame_folder_entry_that_is_not_a_file_is_refused(tmp_path):
    """A dangling link or a folder named like a frame would silently shorten the clip: refused by name."""
    img = np.zeros((8, 8, 3), np.uint8)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), img)
    assert len(read_frames(tmp_path)) == 3
    (tmp_path / "3.jpg").symlink_to(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="3.jpg is a dangling link"):
        read_frames(tmp_path)
    (tmp_path / "3.jpg").unlink()
    (tmp_path / "4.jpg").mkdir()
    with pytest.raises(ValueError, match="4.jpg is not a file"):
        read_frames(tmp_path)
