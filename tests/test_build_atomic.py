"""Atomic builds: a build killed mid-run leaves nothing that passes for a finished dataset, and the next
run removes its leftovers and starts clean."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import build
from fer_jax.data.manifest import COMPLETE_MARKER, load_manifest

REPO = Path(__file__).resolve().parents[1]
NUM_CLIPS = 30


def _noise_dfew(root: Path, num_clips: int) -> Path:
    """Clips of 64x64 noise (no face: every frame also tries the rotated detections, tens of ms a clip)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1, num_clips + 1):
        d = root / "Clip" / "clip_224x224" / f"{i:05d}"
        d.mkdir(parents=True)
        for n in range(1, 5):
            cv2.imwrite(str(d / f"{n}.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        rows.append([f"{i:05d}", 1 + i % 7])
    for split, part in (("train", rows[:-2]), ("test", rows[-2:])):
        p = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / "set_1.csv"
        p.parent.mkdir(parents=True)
        with open(p, "w", newline="") as f:
            csv.writer(f).writerows([["video_name", "label"], *part])
    return root


@pytest.fixture
def noise_dfew(tmp_path) -> Path:
    return _noise_dfew(tmp_path / "raw", NUM_CLIPS)


@pytest.fixture
def small_noise_dfew(tmp_path) -> Path:
    return _noise_dfew(tmp_path / "raw", 4)


def _argv(root: Path, out: Path) -> list[str]:
    return ["--dataset", "dfew", "--root", str(root), "--out", str(out), "--frames", "4", "--size", "32",
            "--workers", "1", "--quiet"]  # fmt: skip


def test_killed_build_is_not_taken_as_finished(noise_dfew, tmp_path):
    out = tmp_path / "shards"
    proc = subprocess.Popen(
        [sys.executable, "-m", "data_prep.build", *_argv(noise_dfew, out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # kill as soon as TFDS has started writing examples into the partial folder
        while time.monotonic() < deadline and proc.poll() is None:
            if list(tmp_path.glob(".shards.partial-*/tfds/dfew/*")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    with pytest.raises(ValueError, match="no dataset directory"):
        load_manifest(out)
    leftovers = list(tmp_path.glob(".shards.partial-*"))
    assert leftovers  # SIGKILL gave it no chance to clean up ...
    assert build.main(_argv(noise_dfew, out)) == 0  # ... the next run removes them and builds in full
    assert not any(p.exists() for p in leftovers)
    m = load_manifest(out)
    assert m["num_examples"] == {"train": NUM_CLIPS - 2, "test": 2}
    assert m["face_found_fraction"] == 0.0  # noise has no face: every clip fell back to the centre crop


def test_unfinished_output_is_rejected_and_rebuilt_clean(small_noise_dfew, tmp_path):
    noise_dfew = small_noise_dfew
    out = tmp_path / "shards"
    assert build.main(_argv(noise_dfew, out)) == 0
    (out / COMPLETE_MARKER).unlink()  # e.g. a copy that stopped half-way
    (out / "stray.array_record-00000-of-00001").write_bytes(b"half")
    with pytest.raises(ValueError, match="not a finished build"):
        load_manifest(out)
    assert build.main(_argv(noise_dfew, out)) == 0
    assert not (out / "stray.array_record-00000-of-00001").exists()
    assert load_manifest(out)["num_examples"] == {"train": 2, "test": 2}


def test_foreign_output_folder_is_left_alone(small_noise_dfew, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert build.main(_argv(small_noise_dfew, out)) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"
