"""Nothing lost, nothing silent, on the data side: every bad input to ``data_prep.build`` /
``data_prep.synthesize`` / a shard folder gives its exit status and a one-line message (or a recorded
reason in the manifest), and nothing valid is deleted or changed. Cases already pinned by
test_build_bad_input.py and test_build_atomic.py are not repeated here."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import build
from data_prep import synthesize as synth
from fer_jax.data.manifest import MANIFEST_FILE, load_manifest
from tests.raw_layout_support import frames_dir, split_csv

# ---- helpers --------------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its content hash: equal snapshots = nothing changed."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _one_line(err: str) -> str:
    err = err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def _dfew(root: Path, train: list[list], test: list[list], clips: list[str]) -> Path:
    for cid in clips:
        frames_dir(root / "Clip" / "clip_224x224" / cid, 4, int(cid) * 20)
    base = root / "EmoLabel_DataSplit"
    split_csv(base / "train(single-labeled)" / "set_1.csv", train)
    split_csv(base / "test(single-labeled)" / "set_1.csv", test)
    return root


def _argv(root: Path, out: Path, *extra: str, dataset: str = "dfew") -> list[str]:
    return ["--dataset", dataset, "--root", str(root), "--out", str(out), "--frames", "4", "--size", "32",
            "--workers", "1", "--quiet", *extra]  # fmt: skip


def _reasons(out: Path) -> dict[str, str]:
    return {s["item"]: s["reason"] for s in load_manifest(out)["skipped"]}


@pytest.fixture
def small_dfew(tmp_path) -> Path:
    return _dfew(tmp_path / "raw", [["00001", 1], ["00002", 2]], [["00003", 3]], ["00001", "00002", "00003"])


@pytest.fixture
def raw_copy(dfew_raw, tmp_path) -> Path:
    return Path(shutil.copytree(dfew_raw, tmp_path / "parent" / "raw"))


# ---- 1. --overwrite replaces builds of ours only ----------------------------------------------------------


@pytest.mark.parametrize("where", ["root", "parent", "inside"])
def test_overwrite_never_touches_the_raw_dataset(raw_copy, capsys, where):
    before = _snapshot(raw_copy.parent)
    out = {"root": raw_copy, "parent": raw_copy.parent, "inside": raw_copy / "shards"}[where]
    assert build.main(_argv(raw_copy, out, "--overwrite")) == 2
    err = _one_line(capsys.readouterr().err)
    assert "raw dataset" in err and str(out) in err
    assert _snapshot(raw_copy.parent) == before


def test_out_symlinked_to_the_root_is_refused(raw_copy, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(raw_copy, target_is_directory=True)
    before = _snapshot(raw_copy)
    assert build.main(_argv(raw_copy, link, "--overwrite")) == 2
    assert "raw dataset" in _one_line(capsys.readouterr().err)
    assert _snapshot(raw_copy) == before


@pytest.mark.parametrize("name", ["thesis.tex", "features.json", "dataset_info.json"])
def test_overwrite_leaves_a_users_folder_alone(small_dfew, tmp_path, capsys, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("precious")  # a file name alone does not make a folder a build of ours
    assert build.main(_argv(small_dfew, out, "--overwrite")) == 2
    err = _one_line(capsys.readouterr().err)
    assert "not a build of ours" in err and "--overwrite" not in err  # no advice to delete it
    assert (out / name).read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_overwrite_replaces_our_own_build(small_dfew, tmp_path, capsys):
    out = tmp_path / "shards"
    assert build.main(_argv(small_dfew, out)) == 0
    capsys.readouterr()
    other = [a if a != "32" else "48" for a in _argv(small_dfew, out)]  # --size 48
    assert build.main(other) == 2  # other settings: ours, so --overwrite is the advice
    assert "--overwrite" in _one_line(capsys.readouterr().err)
    assert load_manifest(out)["preprocessing"]["size"] == 32
    assert build.main([*other, "--overwrite"]) == 0
    assert load_manifest(out)["preprocessing"]["size"] == 48


# ---- 2. labels in the split files --------------------------------------------------------------------------


def test_bad_dfew_labels_and_duplicate_clips(tmp_path):
    clips = [f"{i:05d}" for i in range(1, 11)]
    train = [
        ["00001", "2.7"], ["00002", "inf"], ["00003", "nan"], ["00004", "-inf"], ["00005", "1e400"],
        ["00006", "2.0"],  # a whole number written as a float: kept
        ["7", 3], ["00007", 3],  # the same clip twice, same label: kept once, the repeat recorded
        ["8", 2], ["00008", 5],  # the same clip with two labels: left out
        ["00009", 4],
    ]  # fmt: skip
    root = _dfew(tmp_path / "raw", train, [["00010", 4]], clips)
    out = tmp_path / "out"
    assert build.main(_argv(root, out, "--max-skip", "1.0")) == 0
    reasons = _reasons(out)
    assert "not a whole number" in reasons["train/00001"] and "set_1.csv:2" in reasons["train/00001"]
    for cid in ("00002", "00003", "00004", "00005"):
        assert "not a finite number" in reasons[f"train/{cid}"], reasons
    assert "conflicting labels" in reasons["train/00008"]
    m = load_manifest(out)
    assert any(r["item"] == "train/00007" and "repeats clip" in r["reason"] for r in m["repaired"])
    built = set(m["sources"]["items"])
    assert built == {"train/00006", "train/00007", "train/00009", "test/00010"}
    assert m["class_counts"]["train"] == [0, 1, 1, 1, 0, 0, 0]  # 00006 -> 2, 00007 -> 3, 00009 -> 4


# a field over the csv module's size limit (csv.Error, not a ValueError) and bytes that are not UTF-8
@pytest.mark.parametrize(
    "content", [b"video_name,label\n" + b"1" * 200_000 + b",1\n", b"video_name,label\n\xff\xfe1,1\n"]
)
def test_unparsable_split_file_is_one_line_naming_it(small_dfew, tmp_path, capsys, content):
    p = small_dfew / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    p.write_bytes(content)
    assert build.main(_argv(small_dfew, tmp_path / "out")) == 1
    err = _one_line(capsys.readouterr().err)
    assert "set_1.csv" in err and "unreadable split file" in err
    assert not (tmp_path / "out").exists()


def _see_seq(root: Path, emo: str, name: str, n: int = 4, ev_hw: tuple[int, int] = (24, 32)) -> None:
    for mod, hw in (("frame", (24, 32)), ("event", ev_hw)):
        d = root / mod / emo / name
        d.mkdir(parents=True)
        for k in range(n):
            cv2.imwrite(str(d / f"{k:05d}.jpg"), np.full((*hw, 3), 40 + 9 * k, np.uint8))


def _seq(i: int, light: str = "normal", emo: str = "angry") -> str:
    return f"{i}_001_man_24_Master_{light}_{emo}_10_take000"


def _see_run(root: Path, out: Path, *extra: str) -> int:
    return build.main(
        ["--dataset", "see", "--root", str(root), "--out", str(out), "--frames", "4", "--size", "16",
         "--workers", "1", "--quiet", *extra]
    )  # fmt: skip


def test_see_duplicate_names(tmp_path):
    root = tmp_path / "see"
    for i in (1, 2, 3, 4):
        _see_seq(root, "angry", _seq(i))
    _see_seq(root, "fear", _seq(3))  # sequence 3 under two emotion folders
    entry = '{"subset": "training", "annotations": {"label": "angry"}}'
    other = '{"subset": "testing", "annotations": {"label": "angry"}}'
    # json.load keeps the last of repeated keys silently: 1 repeated identically, 2 with another subset
    text = (
        '{"labels": [], "database": {'
        f'"{_seq(1)}": {entry}, "{_seq(1)}": {entry}, "{_seq(2)}": {entry}, "{_seq(2)}": {other}, '
        f'"{_seq(3)}": {entry}, "{_seq(4)}": {entry}'
        "}}"
    )
    (root / "emotion.json").write_text(text)
    out = tmp_path / "out"
    assert _see_run(root, out, "--max-skip", "1.0") == 0
    reasons = _reasons(out)
    assert "different entries" in reasons[f"emotion.json/{_seq(2)}"]
    assert "more than one emotion folder" in reasons[f"emotion.json/{_seq(3)}"]
    m = load_manifest(out)
    assert any("listed 2 times" in r["reason"] for r in m["repaired"] if _seq(1) in r["item"])
    assert set(m["sources"]["items"]) == {f"train/{_seq(1)}", f"train/{_seq(4)}"}


def test_see_integer_labels_need_a_usable_label_list(tmp_path):
    root = tmp_path / "see"
    for i in (1, 2):
        _see_seq(root, "angry", _seq(i))
    db = {
        _seq(1): {"subset": "training", "annotations": {"label": 0}},
        _seq(2): {"subset": "training", "annotations": {"label": "angry"}},
    }
    # six names: an integer label cannot be told from it (it would silently index the default order)
    labels = ["angry", "disgust", "fear", "happiness", "neutral", "sadness"]
    (root / "emotion.json").write_text(json.dumps({"labels": labels, "database": db}))
    out = tmp_path / "out"
    assert _see_run(root, out, "--max-skip", "1.0") == 0
    assert "'labels'" in _reasons(out)[f"emotion.json/{_seq(1)}"]
    assert set(load_manifest(out)["sources"]["items"]) == {f"train/{_seq(2)}"}


# ---- 3. names stay inside the dataset ---------------------------------------------------------------------


def test_dfew_names_leading_outside_root_are_refused(tmp_path):
    root = _dfew(tmp_path / "raw", [], [], ["00001", "00002"])
    outside = tmp_path / "outside"
    frames_dir(outside / "escape", 4, 7)
    frames_dir(outside / "absolute", 4, 9)
    frames_dir(outside / "linked", 4, 11)
    (root / "Clip" / "clip_224x224" / "00003").symlink_to(outside / "linked", target_is_directory=True)
    train = [["00001", 1], ["../../../outside/escape", 2], [str(outside / "absolute"), 3], ["00003", 4]]
    split_csv(root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv", train)
    split_csv(root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv", [["00002", 5]])
    out = tmp_path / "out"
    assert build.main(_argv(root, out, "--max-skip", "1.0")) == 0
    m = load_manifest(out)
    assert set(m["sources"]["items"]) == {"train/00001", "test/00002"}
    assert m["num_examples"] == {"train": 1, "test": 1}
    reasons = _reasons(out)
    for name in ("../../../outside/escape", str(outside / "absolute"), "00003"):
        assert "outside --root" in reasons[f"train/{name}"], reasons


def test_see_folders_leading_outside_root_are_refused(tmp_path):
    root = tmp_path / "see"
    _see_seq(root, "angry", _seq(1))
    _see_seq(tmp_path / "elsewhere", "angry", _seq(2))
    (root / "frame" / "angry" / _seq(2)).symlink_to(tmp_path / "elsewhere" / "frame" / "angry" / _seq(2))
    (root / "event" / "angry" / _seq(2)).symlink_to(tmp_path / "elsewhere" / "event" / "angry" / _seq(2))
    db = {s: {"subset": "training", "annotations": {"label": "angry"}} for s in (_seq(1), _seq(2))}
    (root / "emotion.json").write_text(json.dumps({"database": db}))
    out = tmp_path / "out"
    assert _see_run(root, out, "--max-skip", "1.0") == 0
    assert "outside --root" in _reasons(out)[f"emotion.json/{_seq(2)}"]
    assert set(load_manifest(out)["sources"]["items"]) == {f"train/{_seq(1)}"}


# ---- 4. files where folders must be -----------------------------------------------------------------------


def test_out_below_a_file_is_one_line_naming_it(small_dfew, tmp_path, capsys):
    f = tmp_path / "somefile"
    f.write_text("mine")
    assert build.main(_argv(small_dfew, f / "shards")) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"{f} is a file" in err
    assert build.main(_argv(small_dfew, f)) == 2  # --out itself a file
    assert "not a directory" in _one_line(capsys.readouterr().err)
    assert f.read_text() == "mine"


def test_root_that_is_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "root.txt"
    f.write_text("x")
    assert build.main(_argv(f, tmp_path / "out")) == 2
    assert "is not a directory" in _one_line(capsys.readouterr().err)


# ---- 5. empty splits are said ------------------------------------------------------------------------------


def test_small_synthetic_see_warns_of_its_empty_test_split(tmp_path, capsys):
    out = tmp_path / "see"
    argv = [
        "--kind",
        "see",
        "--out",
        str(out),
        "--clips",
        "7",
        "--workers",
        "1",
        "--quiet",
        "--no-raw-events",
    ]
    assert synth.main(argv) == 0
    err = capsys.readouterr().err.strip()
    assert _one_line(err).startswith("warning:") and "empty SEE test split" in err
    subsets = {e["subset"] for e in json.loads((out / "emotion.json").read_text())["database"].values()}
    assert subsets == {"training"}


def test_build_with_an_empty_split_says_so(tmp_path, capsys):
    root = tmp_path / "see"
    _see_seq(root, "angry", _seq(1))
    db = {_seq(1): {"subset": "training", "annotations": {"label": "angry"}}}
    (root / "emotion.json").write_text(json.dumps({"database": db}))
    assert _see_run(root, tmp_path / "out") == 0
    err = _one_line(capsys.readouterr().err)
    assert "empty test split" in err


# ---- 6. event frames of another size -------------------------------------------------------------------------


def test_event_frames_of_another_size_are_noted_once(tmp_path):
    root = tmp_path / "see"
    _see_seq(root, "angry", _seq(1), ev_hw=(48, 48))
    _see_seq(root, "angry", _seq(2))
    db = {s: {"subset": "training", "annotations": {"label": "angry"}} for s in (_seq(1), _seq(2))}
    (root / "emotion.json").write_text(json.dumps({"database": db}))
    out = tmp_path / "out"
    assert _see_run(root, out) == 0
    notes = [r for r in load_manifest(out)["repaired"] if "resized to the same shape" in r["reason"]]
    assert len(notes) == 1 and notes[0]["item"] == f"train/{_seq(1)}"
    assert "48x48" in notes[0]["reason"] and "32x24" in notes[0]["reason"]


# ---- 7. opening shards never runs code ----------------------------------------------------------------------


def _evil_module(tmp_path: Path, monkeypatch, name: str) -> Path:
    """A package ``name`` whose import writes the returned marker file (a fresh name per test: an
    imported module is cached, and a second import would not run it again)."""
    marker = tmp_path / "imported.txt"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


@pytest.mark.parametrize("where", ["features.json", "dataset_info.json"])
def test_shards_naming_a_foreign_class_are_refused_before_import(dfew_shards, tmp_path, monkeypatch, where):
    from fer_jax.data.source import ShardSource

    ShardSource(dfew_shards, "train")  # the fixture itself passes the check
    module = f"evil_fer_{where.split('.')[0]}"
    marker = _evil_module(tmp_path, monkeypatch, module)
    d = Path(shutil.copytree(dfew_shards, tmp_path / "copy"))
    doc = json.loads((d / where).read_text())
    if where == "features.json":
        doc["featuresDict"]["features"]["label"]["pythonClassName"] = f"{module}.Feature"  # at any depth
    else:
        doc["features"] = {"pythonClassName": f"{module}.Feature"}  # TFDS also reads features from here
    (d / where).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"{module}.Feature") as e:
        ShardSource(d, "train")
    assert not marker.exists() and module not in sys.modules  # nothing was imported
    assert "\n" not in str(e.value)


# ---- 8. further bad inputs ----------------------------------------------------------------------------------


# (bad flag values: tests/test_build_bad_input.py::test_bad_arguments_exit_two)


def test_ctrl_c_during_the_build_keeps_the_old_build(small_dfew, tmp_path, capsys, monkeypatch):
    from data_prep.builders import dfew

    out = tmp_path / "shards"
    assert build.main(_argv(small_dfew, out)) == 0
    before = _snapshot(out)

    def interrupted(item, settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(dfew, "process", interrupted)
    capsys.readouterr()
    assert build.main([*_argv(small_dfew, out), "--overwrite", "--size", "48"]) == 130
    assert "interrupted" in _one_line(capsys.readouterr().err)
    assert _snapshot(out) == before  # the previous build is whole
    # no partial folder is left (the resume cache of the processed clips is kept on purpose: a rerun
    # with the same settings continues from it, data_prep/builders/resume.py)
    assert not [p for p in tmp_path.glob(".shards.*") if p.name != ".shards.cache"]
    fresh = tmp_path / "fresh"
    assert build.main(_argv(small_dfew, fresh)) == 130
    assert not fresh.exists() and not [p for p in tmp_path.glob(".fresh.*") if p.name != ".fresh.cache"]


def test_truncated_manifest_in_out_is_said_and_rebuilt_on_request(small_dfew, tmp_path, capsys):
    out = tmp_path / "shards"
    assert build.main(_argv(small_dfew, out)) == 0
    text = (out / MANIFEST_FILE).read_text()
    (out / MANIFEST_FILE).write_text(text[: len(text) // 2])
    capsys.readouterr()
    assert build.main(_argv(small_dfew, out)) == 2
    err = _one_line(capsys.readouterr().err)
    assert "cannot be read" in err and "--overwrite" in err
    assert build.main([*_argv(small_dfew, out), "--overwrite"]) == 0
    assert load_manifest(out)["num_examples"] == {"train": 2, "test": 1}


def test_deeply_nested_emotion_json_is_one_line(tmp_path, capsys):
    root = tmp_path / "see"
    _see_seq(root, "angry", _seq(1))
    (root / "emotion.json").write_text("[" * 200_000)
    assert _see_run(root, tmp_path / "out") == 1
    assert "malformed" in _one_line(capsys.readouterr().err)


def test_synthesize_negative_seed_exits_two_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x"
    assert synth.main(["--kind", "dfew", "--out", str(out), "--seed", "-1"]) == 2
    assert "--seed" in _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_synthesize_out_below_a_file_is_one_line_naming_it(tmp_path, capsys):
    f = tmp_path / "somefile"
    f.write_text("mine")
    assert synth.main(["--kind", "dfew", "--out", str(f / "sub"), "--clips", "7"]) == 2
    assert f"{f} is a file" in _one_line(capsys.readouterr().err)
    assert f.read_text() == "mine"


def test_synthesize_overwrite_leaves_a_users_folder_alone(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert synth.main(["--kind", "dfew", "--out", str(out), "--overwrite", "--clips", "7"]) == 2
    assert "not a synthetic dataset of ours" in _one_line(capsys.readouterr().err)
    assert (out / "thesis.tex").read_text() == "precious"


def test_synthesize_overwrite_still_replaces_its_own_output(tmp_path):
    out = tmp_path / "synth"
    out.mkdir()
    (out / "synthesis.json").write_text("{}")  # an earlier output of ours
    (out / "stale.txt").write_text("old")
    argv = ["--kind", "dfew", "--out", str(out), "--clips", "7", "--median-frames", "8", "--workers", "1"]
    assert synth.main([*argv, "--overwrite", "--quiet"]) == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "synthesis.json").read_text())["kind"] == "dfew"
