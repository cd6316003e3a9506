"""Synthetic SEE -> build -> records: exact counts, labels, lighting; event frames and raw voxel grids."""

from __future__ import annotations

import json

import cv2
import numpy as np
from shard_support import records_by_id

from data_prep import build
from fer_jax.data.manifest import load_manifest
from fer_jax.data.schema import decode_frames
from fer_jax.preprocess.events import events_to_voxel_grid
from fer_jax.preprocess.frames import sample_indices


def test_see_round_trip_counts_labels_lighting(see_raw, see_shards):
    spec = json.loads((see_raw / "emotion.json").read_text())
    labels = spec["labels"]
    m = load_manifest(see_shards)
    assert m["class_names"] == labels and m["skipped"] == [] and m["event_kind"] == "frames"
    for subset, split in (("training", "train"), ("testing", "test")):
        expected = {
            k: labels.index(v["annotations"]["label"])
            for k, v in spec["database"].items()
            if v["subset"] == subset
        }
        recs = records_by_id(see_shards, split)
        assert {k: int(r["label"]) for k, r in recs.items()} == expected
        assert m["num_examples"][split] == len(expected)
        for name, r in recs.items():
            # lighting is the 6th field of the sequence name
            assert m["lighting_names"][int(r["lighting"])] == name.split("_")[5].lower()
            assert int(r["num_source_frames"]) == len(list((see_raw / "frame").glob(f"*/{name}/*.jpg")))
        lights = [name.split("_")[5].lower() for name in expected]
        assert m["lighting_counts"][split] == {k: lights.count(k) for k in m["lighting_names"]}


def test_see_event_frames_pair_with_rgb(see_raw, see_shards):
    name, rec = sorted(records_by_id(see_shards, "train").items())[0]
    rgb, ev = decode_frames(rec["rgb"]), decode_frames(rec["event"])
    assert rgb.shape == ev.shape == (8, 64, 64, 3)
    n = int(rec["num_source_frames"])
    k = int(sample_indices(n, 8)[3])
    src = cv2.cvtColor(
        cv2.imread(str(next((see_raw / "event").glob(f"*/{name}")) / f"{k:05d}.jpg")), cv2.COLOR_BGR2RGB
    )
    ref = cv2.resize(src, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(ev[3].astype(int) - ref.astype(int)).mean() < 4  # JPEG twice


def test_raw_events_become_voxel_grids_aligned_to_frames(see_raw, tmp_path):
    out = tmp_path / "voxel"
    argv = ["--dataset", "see", "--root", str(see_raw), "--out", str(out), "--frames", "4", "--size", "32",
            "--workers", "1", "--events", "raw", "--quiet"]  # fmt: skip
    assert build.main(argv) == 0
    name, rec = sorted(records_by_id(out, "test").items())[0]
    assert rec["event"].shape == (4, 32, 32, 3) and rec["event"].dtype == np.float16
    events = np.load(see_raw / "raw_events" / f"{name}.npy")
    times = np.load(see_raw / "raw_events" / f"{name}_frame_times.npy")
    i = int(sample_indices(int(rec["num_source_frames"]), 4)[2])
    grid = events_to_voxel_grid(
        events, num_bins=3, height=96, width=128, t_start=times[i - 1], t_end=times[i]
    )
    ref = cv2.resize(np.moveaxis(grid, 0, -1), (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(rec["event"][2].astype(np.float32), ref, atol=2e-2, rtol=1e-2)
    assert load_manifest(out)["normalization"]["event"]["std"] > 0
    assert load_manifest(out)["event_kind"] == "voxel"


def test_raw_encoding_matches_jpeg_and_is_larger(see_raw, see_shards, tmp_path):
    out = tmp_path / "raw"
    argv = ["--dataset", "see", "--root", str(see_raw), "--out", str(out), "--frames", "8", "--size", "64",
            "--workers", "1", "--encoding", "raw", "--quiet"]  # fmt: skip
    assert build.main(argv) == 0
    a, b = records_by_id(see_shards, "test"), records_by_id(out, "test")
    assert a.keys() == b.keys()
    for k in a:
        raw = b[k]["rgb"]
        assert raw.dtype == np.uint8 and raw.shape == (8, 64, 64, 3)
        assert np.abs(decode_frames(a[k]["rgb"]).astype(int) - raw.astype(int)).mean() < 3

    def size(d):
        return sum(p.stat().st_size for p in d.glob("*.array_record*"))

    assert size(out) > 2 * size(see_shards)
