"""DFEW's 5 folds from one build: every clip processed once, the folds as split lists that ``data.fold``
picks, an interrupted build resumed from its processed clips, and ``fer_jax.folds`` training every fold
once and reporting mean ± std."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tiny_model  # noqa: E402  registers the tiny model (tests/tiny_model.py)

from data_prep import build
from data_prep.builders import dfew as dfew_builder
from fer_jax.data.fold_splits import select_fold, split_name
from fer_jax.data.manifest import load_manifest
from fer_jax.data.source import ShardSource

pytestmark = pytest.mark.usefixtures("module_compile_cache")  # fold 2's programs serve fold 5
_REAL_PROCESS = dfew_builder.process
BUILD_ARGS = ["--dataset", "dfew", "--frames", "2", "--size", "48", "--workers", "1", "--landmarks",
              "file:landmarks", "--quiet", "--fold", "all"]  # fmt: skip


def _csv(raw, split: str, fold: int) -> dict[str, int]:
    path = raw / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
    with open(path) as f:
        return {r["video_name"]: int(r["label"]) - 1 for r in csv.DictReader(f)}


def _counting_process(monkeypatch, fail_at: int | None = None) -> list[str]:
    """Counts the clips processed (workers=1 runs them in this process); ``fail_at``: Ctrl-C at that call."""
    calls: list[str] = []

    def process(item, settings):
        if fail_at is not None and len(calls) + 1 == fail_at:
            raise KeyboardInterrupt
        calls.append(item.key)
        return _REAL_PROCESS(item, settings)

    monkeypatch.setattr(dfew_builder, "process", process)
    return calls


@pytest.fixture(scope="module")
def folds_shards(dfew_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("folds") / "shards"
    with pytest.MonkeyPatch.context() as mp:
        calls = _counting_process(mp)
        assert build.main([*BUILD_ARGS, "--root", str(dfew_raw), "--out", str(out)]) == 0
    return out, calls


def test_fold_all_processes_each_clip_once_and_lists_the_five_folds(dfew_raw, folds_shards):
    out, calls = folds_shards
    all_clips = _csv(dfew_raw, "train", 1) | _csv(dfew_raw, "test", 1)
    assert sorted(calls) == sorted(all_clips)  # 14 clips processed once, not once per fold (70)
    m = load_manifest(out)
    assert m["num_examples"]["clips"] == len(all_clips) and m["preprocessing"]["fold"] == "all"
    assert sorted(m["record_ids"]) == sorted(all_clips)
    for k in range(1, 6):
        for part in ("train", "test"):
            expected = _csv(dfew_raw, part, k)
            name = split_name(k, part)
            assert sorted(m["folds"][str(k)][part]) == sorted(expected)
            assert m["num_examples"][name] == len(expected)
            assert m["class_counts"][name] == np.bincount(list(expected.values()), minlength=7).tolist()
            src = ShardSource(out, name)  # the fold's split reads the listed records of the stored split
            got = {}
            for i in range(len(src)):
                rec = src[i]
                got[rec["id"].decode() if isinstance(rec["id"], bytes) else str(rec["id"])] = int(
                    rec["label"]
                )
            assert got == expected
        assert not set(m["folds"][str(k)]["train"]) & set(m["folds"][str(k)]["test"])


def test_an_interrupted_build_resumes_from_the_clips_it_processed(
    dfew_raw, folds_shards, tmp_path, monkeypatch
):
    ref, _ = folds_shards
    out = tmp_path / "shards"
    args = [*BUILD_ARGS, "--root", str(dfew_raw), "--out", str(out)]
    first = _counting_process(monkeypatch, fail_at=6)
    assert build.main(args) == 130  # Ctrl-C after 5 clips: no --out, the 5 clips kept beside it
    assert not out.exists() and len(first) == 5
    assert len(list((tmp_path / ".shards.cache").glob("*.npz"))) == 5
    second = _counting_process(monkeypatch)
    assert build.main(args) == 0
    assert sorted(second) == sorted(set(load_manifest(ref)["record_ids"]) - set(first))  # only the other 9
    assert not (tmp_path / ".shards.cache").exists()  # removed once the build is complete
    a, b = load_manifest(ref), load_manifest(out)
    assert a["sources"]["items"] == b["sources"]["items"] and a["folds"] == b["folds"]
    for split in ("fold2_test", "fold4_train"):  # the resumed records are the ones a whole build writes
        ra, rb = ShardSource(ref, split), ShardSource(out, split)
        for i in range(len(ra)):
            assert ra[i]["id"] == rb[i]["id"] and list(ra[i]["frames"]) == list(rb[i]["frames"])
            np.testing.assert_array_equal(ra[i]["landmarks"], rb[i]["landmarks"])


def test_other_settings_do_not_reuse_the_processed_clips(dfew_raw, tmp_path, monkeypatch):
    args = [*BUILD_ARGS, "--root", str(dfew_raw), "--out", str(tmp_path / "s")]
    _counting_process(monkeypatch, fail_at=3)
    assert build.main(args) == 130
    calls = _counting_process(monkeypatch)
    assert build.main([*args[:3], "3", *args[4:]]) == 0  # --frames 3: every clip processed again
    assert len(calls) == 14 and load_manifest(tmp_path / "s")["preprocessing"]["frames"] == 3


def test_data_fold_picks_a_fold_and_refuses_what_the_build_does_not_hold(folds_shards, dfew_shards):
    from configs import dfew

    out, _ = folds_shards
    c = dfew.get_config()
    c.data.dir = str(out)
    m = load_manifest(out)
    c.data.fold = 3
    picked = select_fold(c, m)
    assert (picked.data.train_split, picked.data.eval_split) == ("fold3_train", "fold3_test")
    assert c.data.train_split == "train"  # a copy: the caller's config is unchanged
    for fold, words in ((0, "choose one with --config.data.fold"), (6, "holds folds 1, 2, 3, 4, 5")):
        c.data.fold = fold
        with pytest.raises(ValueError, match=words) as e:
            select_fold(c, m)
        assert "\n" not in str(e.value)
    one = load_manifest(dfew_shards)  # built with --fold 1: fold 1 (or 0) keeps train / test
    c.data.dir = str(dfew_shards)
    for fold in (0, 1):
        c.data.fold = fold
        assert select_fold(c, one).data.train_split == "train"
    c.data.fold = 2
    with pytest.raises(ValueError, match="built for fold 1"):
        select_fold(c, one)
    with pytest.raises(ValueError, match="holds folds"):
        ShardSource(out, "fold9_test")
    with pytest.raises(ValueError, match="no split 'validation'"):
        ShardSource(out, "validation")


def _tiny_config(data, fold: int):
    from configs.common import base_config

    c = base_config()
    c.model.name = tiny_model.NAME
    c.data.dir, c.data.fold = str(data), fold
    c.data.num_frames, c.data.image_size = 2, 48
    c.train.batch_size, c.train.num_steps, c.train.eval_every_steps = 4, 2, 2
    c.eval.batch_size = 4
    return c


def test_a_run_does_not_resume_on_another_fold(folds_shards, tmp_path):
    # every fold of a --fold all build has the same manifest: the run's own config tells them apart
    from fer_jax.training.loop import train

    out, _ = folds_shards
    work = tmp_path / "run"
    c = _tiny_config(out, 1)
    train(c, work, stop_at_step=1, progress=False)
    before = (work / "config.json").read_text()
    with pytest.raises(ValueError, match="trained with data.fold=1, not 2") as e:
        train(_tiny_config(out, 2), work, progress=False)
    assert "\n" not in str(e.value)
    assert (work / "config.json").read_text() == before  # refused before anything was rewritten
    assert train(c, work, progress=False)["step"] == 2  # the same fold resumes


def test_folds_command_trains_each_fold_once_and_reports_mean_and_std(folds_shards, tmp_path, capsys):
    """``run_folds`` with an in-process runner (the tiny test model is registered in this process only):
    the commands it gives, the fold each run trained on, skipping on a rerun, and the report's numbers."""
    from fer_jax import folds
    from fer_jax.evaluate import evaluate
    from fer_jax.training.loop import train

    out, _ = folds_shards
    commands: list[list[str]] = []

    def runner(argv, log):
        commands.append(argv)
        wd = argv[argv.index("--workdir") + 1]
        if argv[0] == "fer_jax.train":
            assert f"--config.data.dir={out}" in argv and "--config.seed=3" in argv
            fold = int(next(a for a in argv if a.startswith("--config.data.fold=")).split("=")[1])
            c = _tiny_config(out, fold)
            return 0 if train(c, wd, progress=False)["status"] == "finished" else 1
        evaluate(wd, checkpoint=argv[argv.index("--checkpoint") + 1])
        return 0

    rc, summary = folds.run_folds(config="configs/demo_dfew.py", data=out, workdir=tmp_path, folds=[2, 5],
                                  overrides=["--config.seed=3"], runner=runner)  # fmt: skip
    assert rc == 0 and [c[0] for c in commands] == ["fer_jax.train", "fer_jax.evaluate"] * 2
    m = load_manifest(out)
    for k in (2, 5):
        config = json.loads((tmp_path / f"fold{k}" / "config.json").read_text())
        assert (
            config["data"]["train_split"] == f"fold{k}_train"
            and config["data"]["eval_split"] == f"fold{k}_test"
        )
        metrics = json.loads(folds.metrics_path(tmp_path, k).read_text())
        assert metrics["num_examples"] == m["num_examples"][f"fold{k}_test"]
        assert summary["folds"][str(k)]["uar"] == metrics["uar"]
    vals = [summary["folds"][k]["war"] for k in ("2", "5")]
    assert summary["mean"]["war"] == pytest.approx(np.mean(vals))
    assert summary["std"]["war"] == pytest.approx(np.std(vals, ddof=1))
    report = (tmp_path / "report.md").read_text()
    assert "| **mean** |" in report and "fold2_test-best/metrics.json" in report
    assert json.loads((tmp_path / "summary.json").read_text())["num_folds"] == 2
    commands.clear()
    rc, again = folds.run_folds(config="configs/demo_dfew.py", data=out, workdir=tmp_path, folds=[2, 5],
                                runner=runner)  # fmt: skip
    assert rc == 0 and commands == [] and again["mean"] == summary["mean"]  # both evaluated: nothing reruns
    assert "evaluated already" in capsys.readouterr().out


def test_a_failed_fold_stops_with_its_status_and_the_rerun_resumes_it(folds_shards, tmp_path):
    from fer_jax import folds

    out, _ = folds_shards
    seen: list[str] = []

    def failing(argv, log):
        seen.append(argv[0])
        return 143  # SIGTERM during training: the folds after it are not started

    rc, summary = folds.run_folds(config="c.py", data=out, workdir=tmp_path, folds=[1, 2], runner=failing)
    assert (rc, summary, seen) == (143, None, ["fer_jax.train"])


def test_report_aggregates_folds_from_the_cli(tmp_path, capsys):
    from fer_jax import report

    for k, (war, uar, sad) in enumerate([(0.5, 0.4, 0.2), (0.7, 0.6, None), (0.6, 0.5, 0.4)], start=1):
        d = tmp_path / "runs" / f"fold{k}"
        (d / "eval" / f"fold{k}_test-best").mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"data": {"eval_split": f"fold{k}_test"}}))
        (d / "eval" / f"fold{k}_test-best" / "metrics.json").write_text(json.dumps(
            {"war": war, "uar": uar, "macro_f1": uar - 0.1, "num_examples": 10, "per_class": {"Sad": sad}}))  # fmt: skip
    out = tmp_path / "r" / "report.md"
    assert report.main(["--out", str(out), "--folds", str(tmp_path / "runs")]) == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["mean"]["war"] == pytest.approx(0.6) and s["std"]["war"] == pytest.approx(0.1)
    assert s["mean"]["macro_f1"] == pytest.approx(0.4)
    # a class absent from one fold's test split is averaged over the folds that hold it
    assert s["mean"]["per_class"]["Sad"] == pytest.approx(0.3) and s["std"]["per_class"][
        "Sad"
    ] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert "60.0 ± 10.0" in out.read_text() and "mean ± std over 3 fold(s)" in capsys.readouterr().out
    assert report.main(["--out", str(out), "--folds", str(tmp_path / "nothing")]) == 2
    assert report.main(["--out", str(out), "--folds", str(tmp_path / "runs"), "--run", "a=b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_folds_cli_one_line_errors(dfew_shards, tmp_path, capsys):
    from fer_jax import folds

    base = ["--config", "configs/dfew.py", "--workdir", str(tmp_path)]
    assert folds.main([*base, "--data", str(dfew_shards)]) == 2  # a one-fold build
    assert folds.main([*base, "--data", str(dfew_shards), "--config.data.fold=2"]) == 2
    assert folds.main([*base, "--data", str(dfew_shards), "stray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "--fold all" in err[0]
