"""evaluate / interpret CLIs and helpers that need no trained run (the trained-run cases live in
test_train.py, which trains once and evaluates it several ways)."""

import importlib

import numpy as np
import pytest

from fer_jax.evaluate import format_tables
from fer_jax.interpret.report import expert_usage


def test_expert_usage_statistics():
    # 4 examples, 3 experts, top-2 routing (one expert at 0 per row)
    w = np.array([[0.6, 0.4, 0.0], [0.5, 0.0, 0.5], [0.0, 0.7, 0.3], [0.2, 0.8, 0.0]])
    u = expert_usage({"stats/expert_weights": w, "label": np.array([0, 0, 1, 1])}, ["a", "b"])
    assert u["mean_weight"] == pytest.approx([1.3 / 4, 1.9 / 4, 0.8 / 4])
    assert u["selected_fraction"] == pytest.approx([0.75, 0.75, 0.5])
    assert u["per_class_mean_weight"]["a"] == pytest.approx([0.55, 0.2, 0.25])
    assert expert_usage({"label": np.array([0])}, ["a"]) is None


def test_format_tables_lists_every_class_and_condition():
    m = {
        "checkpoint_step": 7, "split": "test", "num_examples": 3, "war": 2 / 3, "uar": 0.5, "macro_f1": 0.4,
        "per_class": {"happy": 1.0, "sad": None}, "per_lighting": {"low": 0.5},
    }  # fmt: skip
    text = format_tables(m)
    assert "66.67" in text and "happy" in text and "sad" in text and "low" in text


@pytest.mark.parametrize("module", ["fer_jax.evaluate", "fer_jax.predict", "fer_jax.interpret.__main__"])
def test_cli_help(module, capsys):
    # in-process (a subprocess per CLI costs seconds of JAX import); `python -m fer_jax.train` runs as a
    # real subprocess in test_train.py
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--workdir" in capsys.readouterr().out


def test_train_help_exits_zero(capsys):
    from fer_jax import train

    with pytest.raises(SystemExit) as e:
        train._parse(["train", "--help"])
    assert e.value.code == 0 and "--workdir" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--passes", "--batch-size"])
def test_evaluate_rejects_zero_passes_and_batch_size(capsys, flag):
    """0 must be refused, not silently read as "the config's value"."""
    from fer_jax import evaluate

    with pytest.raises(SystemExit) as e:
        evaluate.main(["--workdir", ".", flag, "0"])
    assert e.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"error: {flag} must be >= 1"
    ]
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        evaluate.evaluate(".", **{flag.strip("-").replace("-", "_"): 0})


def test_evaluate_missing_workdir_is_one_line(tmp_path, capsys):
    from fer_jax import evaluate

    assert evaluate.main(["--workdir", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_evaluate_several_workdirs_stops_at_the_first_bad_one(tmp_path, capsys):
    from fer_jax import evaluate

    bad = tmp_path / "missing"
    assert evaluate.main(["--workdir", str(bad), str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}:")
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--workdir", "a", "b", "--out", "x"])
    assert e.value.code == 2


def test_one_line_error_helper():
    from fer_jax.cli import one_line

    assert one_line(ValueError("first\n  second")) == "first"
    assert one_line(ValueError("first\n  last  "), last=True) == "last"
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(KeyError("x"), with_type=True) == "KeyError: 'x'"
    assert one_line("  text\nmore") == "text"
