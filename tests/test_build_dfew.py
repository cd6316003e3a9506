"""Synthetic DFEW -> build -> records: exact counts, labels and ids against the raw CSVs."""

from __future__ import annotations

import csv

import numpy as np
import tensorflow_datasets as tfds

from data_prep import build
from fer_jax.data.manifest import load_manifest
from fer_jax.data.schema import DFEW_CLASS_NAMES, decode_frames
from fer_jax.preprocess.landmarks import TEMPLATE_68


def _csv_labels(raw, split: str) -> dict[str, int]:
    path = raw / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / "set_1.csv"
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {r["video_name"]: int(r["label"]) - 1 for r in rows}


def _records(shards, split: str) -> dict[str, dict]:
    ds = tfds.builder_from_directory(str(shards)).as_data_source(split)
    out = {}
    for i in range(len(ds)):
        ex = ds[i]
        key = ex["id"].decode() if isinstance(ex["id"], bytes) else str(ex["id"])
        out[key] = ex
    return out


def test_dfew_round_trip_counts_and_labels(dfew_raw, dfew_shards):
    m = load_manifest(dfew_shards)
    assert m["dataset"] == "dfew" and m["class_names"] == list(DFEW_CLASS_NAMES)
    assert m["skipped"] == []
    for split in ("train", "test"):
        expected = _csv_labels(dfew_raw, split)
        recs = _records(dfew_shards, split)
        assert {k: int(r["label"]) for k, r in recs.items()} == expected
        assert m["num_examples"][split] == len(expected)
        assert m["class_counts"][split] == np.bincount(list(expected.values()), minlength=7).tolist()
        assert set(m["sources"]["items"]) == {f"{split}/{k}" for k in expected} | {
            k for k in m["sources"]["items"] if not k.startswith(split)
        }
    assert "class_weights" not in m  # counts only: training derives the weights (fer_jax.losses, one formula)
    assert m["preprocessing"]["frames"] == 8 and m["preprocessing"]["size"] == 64


def test_dfew_records_hold_aligned_frames_and_file_landmarks(dfew_shards):
    rec = next(iter(_records(dfew_shards, "train").values()))
    frames = decode_frames(rec["frames"])
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    lm = rec["landmarks"]
    assert lm.shape == (8, 68, 2) and lm.dtype == np.float32
    assert 0.0 <= lm.min() and lm.max() <= 1.0
    assert not np.allclose(lm, TEMPLATE_68)  # the landmark files were used, not the template
    # the eyes of the drawn face sit above its mouth after alignment
    assert lm[:, 36:48, 1].mean() < lm[:, 48:68, 1].mean()
    assert rec["face_found"].shape == (8,)
    # file landmarks default to landmark alignment: a similarity fit puts them near the template
    assert load_manifest(dfew_shards)["preprocessing"]["align"] == "landmarks"
    assert np.abs(lm - TEMPLATE_68).mean() < 0.03


def test_detector_alignment_is_still_available_and_landmark_alignment_needs_landmarks(dfew_raw, tmp_path):
    base = ["--dataset", "dfew", "--root", str(dfew_raw), "--frames", "2", "--size", "48", "--workers", "1",
            "--quiet"]  # fmt: skip
    assert (
        build.main([*base, "--out", str(tmp_path / "a"), "--landmarks", "template", "--align", "landmarks"])
        == 2
    )
    out = tmp_path / "d"
    assert build.main([*base, "--out", str(out), "--landmarks", "file:landmarks", "--align", "detector"]) == 0
    assert load_manifest(out)["preprocessing"]["align"] == "detector"
    lm = next(iter(_records(out, "test").values()))["landmarks"]
    # the Haar box frames the face differently from the template fit, but the face is upright and inside
    assert lm[:, 36:48, 1].mean() < lm[:, 48:68, 1].mean() and 0.0 <= lm.min() and lm.max() <= 1.0


def test_rerun_with_same_settings_skips_and_other_settings_refuse(dfew_raw, dfew_shards, capsys):
    marker = (dfew_shards / "_BUILD_COMPLETE").stat().st_mtime_ns
    argv = ["--dataset", "dfew", "--root", str(dfew_raw), "--out", str(dfew_shards), "--frames", "8",
            "--size", "64", "--workers", "1", "--landmarks", "file:landmarks", "--quiet"]  # fmt: skip
    assert build.main(argv) == 0
    assert "already built" in capsys.readouterr().out
    assert (dfew_shards / "_BUILD_COMPLETE").stat().st_mtime_ns == marker
    assert build.main([*argv[:-1], "--size", "48", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_simulated_events_for_dfew(dfew_raw, tmp_path):
    out = tmp_path / "ev"
    argv = ["--dataset", "dfew", "--root", str(dfew_raw), "--out", str(out), "--frames", "3", "--size", "32",
            "--workers", "1", "--simulate-events", "--bins", "2", "--landmarks", "none", "--quiet"]  # fmt: skip
    assert build.main(argv) == 0
    rec = next(iter(_records(out, "test").values()))
    assert rec["event"].shape == (3, 32, 32, 2) and rec["event"].dtype == np.float16
    assert np.count_nonzero(rec["event"]) > 0  # the drawn faces move between frames
    assert "landmarks" not in rec
    assert "event" in load_manifest(out)["normalization"]
