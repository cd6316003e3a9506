"""Event processing: simulator polarity / timing / refractory, hand-computed voxel grids and event frames,
readers and the validation report for each malformed stream."""

from __future__ import annotations

import numpy as np
import pytest

from fer_jax.preprocess import events as E


def _ramp(n=11, h=3, w=6, rate=0.1):
    """Left half brightens by exp(rate) per frame, right half darkens; returns log frames."""
    k = np.arange(n)[:, None, None]
    log = np.full((n, h, w), np.log(0.3))
    log[:, :, : w // 2] += rate * k
    log[:, :, w // 2 :] -= rate * k
    return log


def test_simulator_on_where_brighter_off_where_darker():
    log = _ramp()
    ev = E.simulate_events(log, np.arange(11) / 100.0, threshold_sigma=0.0, refractory=0.0)
    left = ev["x"] < 3
    assert left.any() and (~left).any()
    assert np.all(ev["p"][left] == 1)
    assert np.all(ev["p"][~left] == -1)
    assert np.all(np.diff(ev["t"]) >= 0)
    # each pixel changes by 1.0 log unit: 5 crossings of 0.2 (4 where float rounding lands just below)
    counts = np.bincount(ev["y"].astype(int) * 6 + ev["x"], minlength=18)
    assert np.all((counts >= 4) & (counts <= 5))
    # first crossing of a pixel at 0.2 log units = 2 frame intervals of 0.1 = 20 ms, by interpolation
    first = ev[(ev["x"] == 0) & (ev["y"] == 0)]["t"][0]
    np.testing.assert_allclose(first, 0.02, atol=1e-9)


def test_simulator_interpolates_multiple_crossings_within_one_interval():
    log = np.log(np.stack([np.full((1, 1), 0.2), np.full((1, 1), 0.2 * np.exp(0.5))]))
    ev = E.simulate_events(log, np.array([0.0, 1.0]), threshold_sigma=0.0, refractory=0.0)
    # 0.5 log units at 0.2 per event: crossings at 0.2 / 0.5 and 0.4 / 0.5 of the interval
    np.testing.assert_allclose(ev["t"], [0.4, 0.8])
    assert list(ev["p"]) == [1, 1]


def test_simulator_static_scene_without_noise_is_silent():
    log = np.log(np.random.default_rng(0).uniform(0.1, 1, (1, 8, 8))).repeat(5, axis=0)
    assert E.simulate_events(log, np.arange(5) / 30.0).size == 0


def test_simulator_noise_adds_events_on_static_scene():
    log = np.zeros((3, 10, 10))
    ev = E.simulate_events(log, np.array([0.0, 1.0, 2.0]), noise_rate=5.0, seed=1)
    # Poisson with mean 1000: far from zero, near the mean
    assert 800 < ev.size < 1200
    assert set(np.unique(ev["p"])) == {-1, 1}


def test_simulator_refractory_drops_every_other_event():
    log = _ramp(n=11, h=1, w=2)
    ts = np.arange(11) / 100.0  # crossings every 20 ms per pixel
    ev0 = E.simulate_events(log, ts, threshold_sigma=0.0, refractory=0.0)
    ev = E.simulate_events(log, ts, threshold_sigma=0.0, refractory=0.03)
    for x in (0, 1):
        t_all = ev0["t"][ev0["x"] == x]
        t_kept = ev["t"][ev["x"] == x]
        np.testing.assert_allclose(t_kept, t_all[::2])
        assert np.all(np.diff(t_kept) >= 0.03 - 1e-12)


def test_simulator_is_deterministic_under_seed():
    log = np.log(np.random.default_rng(3).uniform(0.05, 1, (6, 5, 7)))
    a = E.simulate_events(log, np.arange(6) / 30.0, noise_rate=2.0, seed=4)
    b = E.simulate_events(log, np.arange(6) / 30.0, noise_rate=2.0, seed=4)
    c = E.simulate_events(log, np.arange(6) / 30.0, noise_rate=2.0, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.size != c.size or not np.array_equal(a, c)


def test_simulator_rejects_bad_timestamps():
    with pytest.raises(ValueError, match="increasing"):
        E.simulate_events(np.zeros((3, 2, 2)), np.array([0.0, 0.0, 1.0]))


def test_voxel_grid_matches_hand_computation():
    ev = E.make_events(t=[0.0, 0.25, 0.5, 0.9, 1.0], x=[0, 1, 1, 2, 0], y=[0, 0, 1, 1, 0], p=[1, -1, 1, 1, 1])
    g = E.events_to_voxel_grid(ev, num_bins=3, height=2, width=3, t_start=0.0, t_end=1.0, normalize=False)
    want = np.zeros((3, 2, 3))
    want[0, 0, 0] = 1.0  # t=0 -> tau 0
    want[0, 0, 1], want[1, 0, 1] = -0.5, -0.5  # t=0.25 -> tau 0.5
    want[1, 1, 1] = 1.0  # t=0.5 -> tau 1
    want[1, 1, 2], want[2, 1, 2] = 0.2, 0.8  # t=0.9 -> tau 1.8
    # t=1.0 is outside [t_start, t_end)
    np.testing.assert_allclose(g, want, atol=1e-6)
    gn = E.events_to_voxel_grid(ev, num_bins=3, height=2, width=3, t_start=0.0, t_end=1.0)
    vals = want[want != 0]
    np.testing.assert_allclose(gn[want != 0], (vals - vals.mean()) / vals.std(), atol=1e-5)
    assert np.all(gn[want == 0] == 0)


def test_voxel_grid_single_bin_sums_polarity():
    ev = E.make_events(t=[0.1, 0.2, 0.3], x=[1, 1, 0], y=[0, 0, 0], p=[1, 1, -1])
    g = E.events_to_voxel_grid(ev, num_bins=1, height=1, width=2, t_start=0, t_end=1, normalize=False)
    np.testing.assert_allclose(g, [[[-1.0, 2.0]]])


def test_event_frame_rendering():
    ev = E.make_events(t=[0.1, 0.2, 0.3, 0.4, 2.0], x=[0, 0, 1, 1, 1], y=[0, 0, 0, 0, 0], p=[1, 1, -1, 1, 1])
    img = E.events_to_frame(ev, height=2, width=2, t_start=0.0, t_end=1.0, step=50)
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[0, 0], [228, 228, 128])  # two ON
    np.testing.assert_array_equal(img[0, 1], [178, 128, 78])  # one ON, one OFF (t=2.0 outside)
    np.testing.assert_array_equal(img[1, 1], [128, 128, 128])  # background


def _raw(t, x, y, p, tdtype="<f8", xdtype="<i4"):
    arr = np.empty(len(t), dtype=[("t", tdtype), ("x", xdtype), ("y", xdtype), ("p", "i1")])
    arr["t"], arr["x"], arr["y"], arr["p"] = t, x, y, p
    return arr


def test_validate_reports_out_of_range():
    ev, rep = E.validate_events(
        _raw([0, 1, 2, 3], [0, 5, -1, 1], [0, 0, 0, 4], [1, 1, 1, -1]), height=4, width=4
    )
    assert rep.out_of_range == 3 and ev.size == 1 and not rep.clean
    assert ev.dtype == E.EVENT_DTYPE


def test_validate_reports_and_repairs_non_monotonic():
    ev, rep = E.validate_events(_raw([0.0, 0.3, 0.2, 0.4], [0] * 4, [0] * 4, [1] * 4), height=1, width=1)
    assert rep.non_monotonic == 1
    np.testing.assert_allclose(ev["t"], [0.0, 0.2, 0.3, 0.4])


def test_validate_reports_empty_stream():
    ev, rep = E.validate_events(_raw([], [], [], []), height=4, width=4)
    assert rep.empty and ev.size == 0 and not rep.clean
    _, rep2 = E.validate_events(_raw([0.1], [9], [9], [1]), height=4, width=4)
    assert rep2.empty and rep2.out_of_range == 1


def test_validate_reports_bad_polarity():
    ev, rep = E.validate_events(_raw([0, 1, 2], [0] * 3, [0] * 3, [1, 0, 1]), height=1, width=1)
    assert rep.bad_polarity == 1 and list(ev["p"]) == [1, -1, 1]  # 0/1 encoding remapped
    ev, rep = E.validate_events(_raw([0, 1, 2], [0] * 3, [0] * 3, [1, 3, -1]), height=1, width=1)
    assert rep.bad_polarity_dropped == 1 and list(ev["p"]) == [1, -1]


def test_validate_reports_non_finite_time():
    ev, rep = E.validate_events(_raw([0, np.nan, 2], [0] * 3, [0] * 3, [1] * 3), height=1, width=1)
    assert rep.non_finite_time == 1 and ev.size == 2


def test_clean_stream_is_clean():
    ev, rep = E.validate_events(_raw([0, 1], [0, 1], [0, 1], [1, -1]), height=2, width=2)
    assert rep.clean and ev.size == 2 and "2/2" in rep.summary()


def test_read_round_trips(tmp_path):
    ev = E.make_events(t=[0.001, 0.002, 0.0035], x=[1, 2, 3], y=[0, 1, 2], p=[1, -1, 1])
    np.save(tmp_path / "a.npy", ev)
    np.savez(tmp_path / "b.npz", t=ev["t"], x=ev["x"], y=ev["y"], p=ev["p"])
    np.savez(tmp_path / "c.npz", events=ev)
    (tmp_path / "d.txt").write_text("# t x y p\n1000 1 0 1\n2000 2 1 0\n3500 3 2 1\n")  # us and 0/1 polarity
    for name in ("a.npy", "b.npz", "c.npz", "d.txt"):
        got, rep = E.read_events(tmp_path / name, height=4, width=4)
        assert got.dtype == E.EVENT_DTYPE
        np.testing.assert_allclose(got["t"], ev["t"], atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(got["p"], ev["p"], err_msg=name)
        np.testing.assert_array_equal(got["x"], ev["x"], err_msg=name)
    _, rep = E.read_events(tmp_path / "d.txt")
    assert rep.time_unit == "us" and rep.bad_polarity == 1


def test_read_rejects_unknown_and_malformed(tmp_path):
    (tmp_path / "e.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match="unknown event file type"):
        E.read_events(tmp_path / "e.bin")
    (tmp_path / "f.txt").write_text("0.1 1 2\n")
    with pytest.raises(ValueError, match="4 values"):
        E.read_events(tmp_path / "f.txt")
    with pytest.raises(FileNotFoundError):
        E.read_events(tmp_path / "missing.npy")
