"""Each bad input of a raw dataset gives its recorded reason and the right exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import build
from fer_jax.data.manifest import load_manifest
from tests.raw_layout_support import frames_dir, split_csv


def _dfew(root: Path, train_rows: list[list], test_rows: list[list], clips: dict[str, int]) -> Path:
    for cid, n in clips.items():
        frames_dir(root / "Clip" / "clip_224x224" / cid, n, int(cid) * 20)
    base = root / "EmoLabel_DataSplit"
    split_csv(base / "train(single-labeled)" / "set_1.csv", train_rows)
    split_csv(base / "test(single-labeled)" / "set_1.csv", test_rows)
    return root


def _run(root: Path, out: Path, *extra: str) -> int:
    args = ["--dataset", "dfew", "--root", str(root), "--out", str(out), "--frames", "4", "--size", "32"]
    return build.main([*args, "--workers", "1", "--quiet", *extra])


def _reasons(out: Path) -> dict[str, str]:
    return {s["item"]: s["reason"] for s in load_manifest(out)["skipped"]}


@pytest.fixture
def bad_dfew(tmp_path) -> Path:
    """Good clips 00001-00004 and one example of every CSV / clip problem."""
    root = _dfew(tmp_path / "raw", [], [], {f"{i:05d}": 5 for i in range(1, 5)})
    clips = root / "Clip" / "clip_224x224"
    (clips / "00005").mkdir()  # empty folder
    frames_dir(clips / "00006", 3, 0)
    (clips / "00006" / "2.jpg").write_bytes(b"\xff\xd8garbage")  # unreadable image
    frames_dir(clips / "00007", 3, 0)
    data = (clips / "00007" / "3.jpg").read_bytes()
    (clips / "00007" / "3.jpg").write_bytes(data[: len(data) // 2])  # truncated image
    (root / "Clip" / "original").mkdir(parents=True)
    (root / "Clip" / "original" / "00008.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    frames_dir(clips / "00009", 4, 0)
    frames_dir(clips / "00010", 4, 0)
    frames_dir(clips / "00011", 4, 0)
    train = [
        ["00001", 1], ["00002", 7], ["00005", 2], ["00006", 3], ["00007", 4], ["00008", 5],
        ["00099", 1],  # missing clip
        ["00009", 0],  # label out of range
        ["00010", 8],  # label out of range
        ["00001", 1],  # duplicate row, same label: repaired
        ["00003", 2], ["00003", 5],  # duplicate rows with conflicting labels
        ["00004"],  # malformed row
        ["00004", "x"],  # label not a number
    ]  # fmt: skip
    split_csv(root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv", train)
    split_csv(root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv", [["00004", 6], ["11", 2]])
    return root


def test_every_bad_dfew_input_is_recorded(bad_dfew, tmp_path):
    out = tmp_path / "out"
    assert _run(bad_dfew, out, "--max-skip", "1.0") == 0
    reasons = _reasons(out)
    expect = {
        "train/00005": "no image files",
        "train/00006": "unreadable image",
        "train/00007": "unreadable image|truncated JPEG",
        "train/00008": "video",
        "train/00099": "no clip folder or video",
        "train/00009": "out of range",
        "train/00010": "out of range",
        "train/00003": "conflicting labels",
        "train/00004": "not a number",
    }
    for item, pattern in expect.items():
        assert item in reasons, (item, reasons)
        assert any(p in reasons[item] for p in pattern.split("|")), (item, reasons[item])
    assert any("malformed row" in r for r in reasons.values())
    m = load_manifest(out)
    assert any(r["item"] == "train/00001" and "duplicate row" in r["reason"] for r in m["repaired"])
    # what survived: 00001 (Happy), 00002 (Fear) in train; 00004 (Disgust) and "11" -> 00011 (Sad) in test
    assert m["num_examples"] == {"train": 2, "test": 2}
    assert m["class_counts"]["train"] == [1, 0, 0, 0, 0, 0, 1]
    assert m["class_counts"]["test"] == [0, 1, 0, 0, 0, 1, 0]


def test_too_many_skips_exit_non_zero_but_keep_the_record(bad_dfew, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(bad_dfew, out) == 1  # default --max-skip 1%
    err = capsys.readouterr().err
    assert "--max-skip" in err
    assert load_manifest(out)["skipped"]  # finished, with its reasons, but flagged by the exit status
    # a re-run with the same settings does no work and reports the same status
    assert _run(bad_dfew, out) == 1
    assert "already built" in capsys.readouterr().out


def test_nothing_built_exits_one_and_writes_nothing(tmp_path, capsys):
    root = _dfew(tmp_path / "raw", [["00001", 9]], [["00002", 1]], {"00001": 3})
    out = tmp_path / "out"
    assert _run(root, out) == 1
    assert "nothing was built" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_clip_in_both_splits_is_kept_in_test_only(tmp_path):
    root = _dfew(tmp_path / "raw", [["00001", 1], ["00002", 2]], [["00001", 1]], {"00001": 3, "00002": 3})
    out = tmp_path / "out"
    assert _run(root, out, "--max-skip", "1.0") == 0
    assert "also in the test split" in _reasons(out)["train/00001"]
    assert load_manifest(out)["num_examples"] == {"train": 1, "test": 1}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--fold", "9"], "--fold"),
        (["--frames", "0"], "--frames"),
        (["--landmarks", "bogus"], "--landmarks"),
        (["--workers", "0"], "--workers"),
        (["--max-skip", "2"], "--max-skip"),
        (["--max-skip", "nan"], "--max-skip"),
        (["--size", "0"], "--size"),
        (["--size", "-5"], "--size"),
        (["--workers", "-1"], "--workers"),
        (["--bins", "0"], "--bins"),
        (["--frames", "-1"], "--frames"),
    ],
)
def test_bad_arguments_exit_two(tmp_path, capsys, args, message):
    root = _dfew(tmp_path / "raw", [["00001", 1]], [["00001", 1]], {"00001": 3})
    assert _run(root, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_cli_reports_one_line_without_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "data_prep.build", "--dataset", "dfew", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "is not a directory" in r.stderr
    h = subprocess.run([sys.executable, "-m", "data_prep.build", "--help"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert h.returncode == 0 and "--max-skip" in h.stdout


# ---- SEE / DSEE ----------------------------------------------------------------------------------------


def _see_seq(root: Path, emo: str, name: str, n: int, *, events: bool = True) -> None:
    for mod in ("frame", "event") if events else ("frame",):
        d = root / mod / emo / name
        d.mkdir(parents=True)
        for k in range(n):
            cv2.imwrite(str(d / f"{k:05d}.jpg"), np.full((24, 32, 3), 40 + k, np.uint8))


def _name(i: int, light: str, emo: str) -> str:
    return f"{i}_001_man_24_Master_{light}_{emo}_10_take000"


def test_every_bad_see_input_is_recorded(tmp_path):
    root = tmp_path / "see"
    good = [_name(i, light, "angry") for i, light in enumerate(["normal", "Low"], 1)]
    for nm in good:
        _see_seq(root, "angry", nm, 5)
    _see_seq(root, "fear", "3_001_man_24_Master_weird_fear_10_take000", 5)  # no lighting token
    _see_seq(root, "fear", _name(4, "HDR", "fear"), 5, events=False)  # no event folder
    _see_seq(root, "sadness", _name(5, "HDR", "sadness"), 5)  # json says happiness
    db = {nm: {"subset": "training", "annotations": {"label": "angry"}} for nm in good}
    db["3_001_man_24_Master_weird_fear_10_take000"] = {"subset": "training", "annotations": {"label": "fear"}}
    db[_name(4, "HDR", "fear")] = {"subset": "testing", "annotations": {"label": "fear"}}
    db[_name(5, "HDR", "sadness")] = {"subset": "training", "annotations": {"label": "happiness"}}
    db[_name(6, "normal", "angry")] = {"subset": "training", "annotations": {"label": "angry"}}  # no folder
    db[_name(7, "normal", "angry")] = {"subset": "validate-me", "annotations": {"label": "angry"}}
    db[_name(8, "normal", "angry")] = {"subset": "training", "annotations": {"label": "bored"}}
    db[_name(9, "normal", "angry")] = "not an object"
    (root / "emotion.json").write_text(json.dumps({"labels": [], "database": db}))
    out = tmp_path / "out"
    argv = ["--dataset", "see", "--root", str(root), "--out", str(out), "--frames", "4", "--size", "16",
            "--workers", "1", "--quiet"]  # fmt: skip
    assert build.main([*argv, "--max-skip", "1.0"]) == 0
    reasons = _reasons(out)
    expect = {
        "3_001_man_24_Master_weird_fear_10_take000": "lighting",
        _name(4, "HDR", "fear"): "no event folder",
        _name(5, "HDR", "sadness"): "disagrees with its folder",
        _name(6, "normal", "angry"): "no frame folder",
        _name(7, "normal", "angry"): "unknown subset",
        _name(8, "normal", "angry"): "not one of the 7 emotions",
        _name(9, "normal", "angry"): "not an object",
    }
    for seq, pattern in expect.items():
        assert pattern in reasons[f"emotion.json/{seq}"], (seq, reasons)
    m = load_manifest(out)
    assert m["num_examples"] == {"train": 2}
    assert m["lighting_counts"]["train"]["normal"] == 1 and m["lighting_counts"]["train"]["low"] == 1


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"database": 3}'])
def test_malformed_emotion_json_exits_one(tmp_path, capsys, content):
    root = tmp_path / "see"
    _see_seq(root, "angry", _name(1, "normal", "angry"), 3)
    (root / "emotion.json").write_text(content)
    rc = build.main(
        ["--dataset", "see", "--root", str(root), "--out", str(tmp_path / "o"), "--workers", "1", "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "malformed" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_broken_event_files_are_skipped(tmp_path):
    root = tmp_path / "dsee"
    names = [_name(i, "normal", "angry") for i in range(1, 5)]
    raw = root / "raw_events"
    raw.mkdir(parents=True)
    from fer_jax.preprocess.events import EVENT_DTYPE

    for nm in names:
        _see_seq(root, "angry", nm, 5, events=False)
    ok = np.zeros(50, EVENT_DTYPE)
    ok["t"] = np.linspace(0, 0.15, 50)
    ok["x"], ok["y"], ok["p"] = 5, 6, 1
    np.save(raw / f"{names[0]}.npy", ok)
    np.save(raw / f"{names[0]}_frame_times.npy", (np.arange(5) + 1) / 30.0)
    (raw / f"{names[1]}.npy").write_bytes(b"garbage")  # unreadable
    bad = ok.copy()
    bad["x"] = 999  # every event outside the 32x24 sensor
    np.save(raw / f"{names[2]}.npy", bad)
    np.save(raw / f"{names[3]}.npy", np.arange(10.0))  # not a structured array
    db = {nm: {"subset": "training", "annotations": {"label": "angry"}} for nm in names}
    (root / "emotion.json").write_text(json.dumps({"database": db}))
    out = tmp_path / "out"
    argv = ["--dataset", "dsee", "--root", str(root), "--out", str(out), "--frames", "3", "--size", "16",
            "--workers", "1", "--quiet", "--max-skip", "1.0"]  # fmt: skip
    assert build.main(argv) == 0
    reasons = _reasons(out)
    assert "broken event file" in reasons[f"train/{names[1]}"]
    assert "no valid events" in reasons[f"train/{names[2]}"]
    assert "broken event file" in reasons[f"train/{names[3]}"]
    m = load_manifest(out)
    assert m["num_examples"] == {"train": 1} and m["preprocessing"]["events_used"] == "raw"
