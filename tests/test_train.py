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

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _compile_cache(tmp_path_factory):
    """Each train() call jits its steps afresh; a persistent cache lets the later runs of this module reuse
    the executables of the first (restored afterwards so other modules are unaffected)."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")  # fmt: skip
    old = {n: getattr(jax.config, n) for n in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update(names[1], 0.0)
    jax.config.update(names[2], 0)
    yield
    for n, v in old.items():
        jax.config.update(n, v)
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()  # the next module starts without this module's cache


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
    # same batches in the same order across the interruption
    assert first.seen + second.seen == straight_seen
    _, _, a, step_a, _ = evaluate_lib.restore_for_eval(straight_dir, "latest")
    _, _, b, step_b, _ = evaluate_lib.restore_for_eval(tmp_path, "latest")
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
    cfg = loop.load_config(workdir)
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
    _, _, state, step, _ = evaluate_lib.restore_for_eval(tmp_path, "latest")
    assert step == 2
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state["params"]))


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
