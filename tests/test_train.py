"""End-to-end tests of fer_jax.training.loop.train on a tiny registered model and in-memory data:
exact resume, NaN stop, evaluation counting, and the CLI's error handling."""

import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_train_support as support  # noqa: E402

from fer_jax import evaluate as evaluate_lib  # noqa: E402
from fer_jax.training import loop  # noqa: E402
from fer_jax.training import run as run_lib  # noqa: E402
from fer_jax.training.run import Run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("module_compile_cache")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """8 steps in one go; returns (workdir, the data order it saw)."""
    workdir = tmp_path_factory.mktemp("straight")
    data = support.ToyData()
    summary = loop.train(support.tiny_config(), workdir, data=data, progress=False)
    assert summary["status"] == "finished" and summary["step"] == 8
    return workdir, data.seen


def test_resume_is_exact(straight_run, tmp_path):
    straight_dir, straight_seen = straight_run
    first, second = support.ToyData(), support.ToyData()
    s1 = loop.train(support.tiny_config(), tmp_path, data=first, stop_at_step=3, progress=False)
    assert s1["status"] == "stopped" and s1["step"] == 3
    s2 = loop.train(support.tiny_config(), tmp_path, data=second, progress=False)
    assert s2["status"] == "finished" and s2["step"] == 8
    # the prefetch drew two batches ahead of the ones consumed (train.prefetch_batches = 2) ...
    assert len(first.seen) == 3 + 2 and len(straight_seen) == 8 + 2
    # ... yet the checkpoint holds the consumed position: same batches in the same order across the stop
    assert first.seen[:3] + second.seen[:5] == straight_seen[:8]
    run_a, run_b = Run.restore(straight_dir, "latest"), Run.restore(tmp_path, "latest")
    a, b, step_a, step_b = run_a.state, run_b.state, run_a.step, run_b.step
    assert step_a == step_b == 8
    # params, EMA, BatchNorm stats, dropout RNG and optimizer moments all agree
    keyless = lambda s: jax.tree.map(
        lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, s
    )
    chex.assert_trees_all_close(keyless(a), keyless(b), atol=1e-6, rtol=0)
    # the resumed run's log has each step once
    rows = [r for r in support_rows(tmp_path) if r["split"] == "train"]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]


def support_rows(workdir):
    from fer_jax.training.logging import read_metrics

    return read_metrics(workdir)


def test_outputs_of_a_run(straight_run):
    workdir, _ = straight_run
    for name in (
        "config.json",
        "metrics.jsonl",
        "figures/confusion.png",
        "figures/curves.png",
        "eval_test.json",
    ):
        assert (workdir / name).exists(), name
    assert list(workdir.glob("tb/events.out.tfevents.*"))
    cfg = run_lib.load_config(workdir)
    assert cfg.model.name == "tiny_test" and cfg.train.num_steps == 8


@pytest.mark.parametrize("batch_size", [4, 8])
def test_evaluate_counts_each_example_once(straight_run, tmp_path, batch_size):
    workdir, _ = straight_run
    data = support.ToyData(num_test=13)  # 13: not a multiple of either batch size
    m = evaluate_lib.evaluate(
        workdir, checkpoint="latest", batch_size=batch_size, data=data, out_dir=tmp_path
    )
    assert m["num_examples"] == 13
    assert int(np.sum(m["confusion"])) == 13
    assert (
        np.asarray(m["confusion"]).sum(axis=1).tolist()
        == np.bincount([int(e["label"]) for e in data.test], minlength=3).tolist()
    )
    assert set(m["per_lighting"]) == {"normal", "low"}
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "confusion.png").exists()
    m2 = evaluate_lib.evaluate(
        workdir, checkpoint="latest", batch_size=batch_size, passes=2, data=data, out_dir=tmp_path
    )
    assert int(np.sum(m2["confusion"])) == 26 and m2["passes"] == 2


def test_evaluate_batch_size_does_not_change_metrics(straight_run, tmp_path):
    workdir, _ = straight_run
    a = evaluate_lib.evaluate(
        workdir, checkpoint="latest", batch_size=4, data=support.ToyData(), out_dir=tmp_path
    )
    b = evaluate_lib.evaluate(
        workdir, checkpoint="latest", batch_size=16, data=support.ToyData(), out_dir=tmp_path
    )
    assert a["confusion"] == b["confusion"]


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = support.tiny_config(eval_every_steps=2)
    with pytest.raises(loop.NonFiniteLossError, match="at step 3") as info:
        loop.train(cfg, tmp_path, data=support.ToyData(nan_at=2), progress=False)
    assert info.value.step == 3
    run = Run.restore(tmp_path, "latest")
    assert run.step == 2
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(run.state["params"]))


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_train_cli_error_is_one_line(tmp_path):
    r = _cli("fer_jax.train", "--config", "configs/nope.py", "--workdir", str(tmp_path))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_early_stopping_patience_and_round_trip():
    from fer_jax.training.early_stopping import EarlyStopping

    es = EarlyStopping(patience=2)
    assert es.update(0.5, 10) and not es.should_stop
    assert not es.update(0.5, 20)  # equal is no gain
    assert es.update(0.6, 30) and es.bad_evals == 0
    assert not es.update(float("nan"), 40) and not es.update(0.1, 50)
    assert es.should_stop and es.best == 0.6 and es.best_step == 30
    again = EarlyStopping.from_dict(es.to_dict())
    assert again == es
    fresh = EarlyStopping.from_dict(EarlyStopping(patience=0).to_dict())
    assert fresh.best == float("-inf") and not fresh.should_stop


class _EvalFails(support.ToyData):
    """Training data fine, evaluation broken (as shards without the eval split's files would be)."""

    def eval_iterator(self, *args, **kwargs):
        raise OSError("the evaluation shards are unreadable")


def test_failed_evaluation_keeps_the_steps_before_it(tmp_path):
    cfg = support.tiny_config(eval_every_steps=4, checkpoint_every_steps=100)
    with pytest.raises(OSError, match="unreadable"):
        loop.train(cfg, tmp_path, data=_EvalFails(), progress=False)
    assert Run.restore(tmp_path, "latest").step == 4  # saved before the error went on


class _NoEvalSplit(support.ToyData):
    def num_examples(self, config, split):
        return 0 if split != "train" else super().num_examples(config, split)


def test_missing_eval_split_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="evaluation split 'test' .* has no examples"):
        loop.train(support.tiny_config(), tmp_path, data=_NoEvalSplit(), progress=False)
    assert not (tmp_path / "checkpoints" / "latest").exists() or not any(
        (tmp_path / "checkpoints" / "latest").iterdir()
    )


def test_refused_resume_leaves_the_run_as_it_was(straight_run, tmp_path):
    import shutil

    src, _ = straight_run
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    before = {p: p.read_bytes() for p in (workdir / "config.json", workdir / "manifest.json")}
    changed = support.tiny_config()
    changed.model.num_classes = 4  # another model: the data (3 classes) and the checkpoint disagree
    with pytest.raises(ValueError, match="num_classes=4"):
        loop.train(changed, workdir, data=support.ToyData(), progress=False)
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("optim.lr", -1e-3, "optim.lr=-0.001 must be > 0"),
        ("train.num_steps", -5, "train.num_steps=-5 must be an integer >= 0"),
        ("eval.batch_size", 0, "eval.batch_size=0 must be an integer >= 1"),
        ("train.batch_size", 0, "train.batch_size=0 must be an integer >= 1"),
        ("train.ema_decay", 1.5, "train.ema_decay=1.5 must be in"),
        ("optim.lr", float("nan"), "must be finite"),
    ],
)
def test_out_of_range_config_is_refused_in_one_line_before_writing(tmp_path, field, value, words):
    cfg = support.tiny_config()
    section, key = field.split(".")
    cfg[section][key] = value
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("+", r"\+")) as e:
        loop.train(cfg, tmp_path / "run", data=support.ToyData(), progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_corrupted_latest_checkpoint_resumes_from_the_previous_one(tmp_path, capsys):
    cfg = support.tiny_config(eval_every_steps=100, checkpoint_every_steps=2, keep_checkpoints=3)
    loop.train(cfg, tmp_path, data=support.ToyData(), stop_at_step=4, progress=False)
    step4 = tmp_path / "checkpoints" / "latest" / "4"
    meta = next(p for p in step4.rglob("*") if p.is_file() and p.parent.name == "meta")
    meta.write_text(meta.read_text()[:5])  # truncated
    summary = loop.train(cfg, tmp_path, data=support.ToyData(), progress=True)
    assert summary["status"] == "finished" and summary["step"] == 8
    out = capsys.readouterr()
    assert "checkpoint step 4 is unreadable" in out.out + out.err and "using step 2" in out.out + out.err
    assert (tmp_path / "checkpoints" / "latest" / "4.unreadable").is_dir()  # kept for the user, renamed
    assert Run.restore(tmp_path, "latest").step == 8


def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    """Ctrl-C before the loop's signal handler is installed (data reading, compilation): no traceback."""
    from fer_jax import train as train_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    from types import SimpleNamespace

    monkeypatch.setattr(train_cli, "_CONFIG", SimpleNamespace(value=support.tiny_config()))
    monkeypatch.setattr(train_cli, "_WORKDIR", SimpleNamespace(value=str(tmp_path)))
    monkeypatch.setattr(train_cli, "_NO_PROGRESS", SimpleNamespace(value=True))
    assert train_cli.main(["train"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted during start-up, before the first step: no checkpoint was written"]
