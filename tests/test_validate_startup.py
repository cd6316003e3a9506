"""Start-up refusals of fer_jax.training.validate: paper configs without ImageNet weights (``none`` is the
explicit choice of random initialisation; the demo configs train without any flag) and a JAX backend other
than ``train.expect_platform``; the start-up line names the platform, device kind and count."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_train_support as support  # noqa: E402

from fer_jax.training import loop  # noqa: E402
from fer_jax.training.validate import check_config  # noqa: E402

PAPER_CONFIGS = ("dfew", "see", "see_reference", "dsee", "dfew_resnet3d_18", "dfew_r2plus1d_18",
                 "dfew_r3d_18", "dfew_former_dfer", "dfew_resnet18_lstm", "dfew_resnet18_gru")  # fmt: skip
DEMO_CONFIGS = ("demo_dfew", "demo_see", "demo_see_rgb")
FLAG = "--config.model.backbone_weights="


def _config(name: str):
    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_config_without_weights_is_refused_naming_the_flag(name):
    with pytest.raises(ValueError) as e:
        check_config(_config(name))
    msg = str(e.value)
    assert "\n" not in msg and "config.model.backbone_weights is empty" in msg
    assert f"{FLAG}DIR" in msg and f"{FLAG}none" in msg


@pytest.mark.parametrize("name", PAPER_CONFIGS)
@pytest.mark.parametrize("value", ["none", "NONE", "/weights/resnet18"])
def test_paper_config_with_weights_or_none_is_accepted(name, value):
    c = _config(name)
    c.model.backbone_weights = value
    check_config(c)


@pytest.mark.parametrize("name", DEMO_CONFIGS)
def test_demo_configs_need_no_flag_and_train_from_random_init(name):
    from flax import nnx

    from fer_jax.models import registry

    c = _config(name)
    check_config(c)
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    assert registry.pretrained_targets(model, c) == []  # nothing loaded: random initialisation


def test_mco_e_net_branch_without_weights_is_refused():
    c = _config("see")
    c.model.rgb_backbone_weights = "/weights/resnet18"  # the event branch falls back to backbone_weights ("")
    with pytest.raises(ValueError, match=r"empty \(event branch\)"):
        check_config(c)
    c.model.event_backbone_weights = "none"
    check_config(c)


def test_a_whole_converted_model_needs_no_backbone_weights():
    c = _config("see_reference")
    c.model.weights = "/weights/mco_e_net_reference"  # the authors' trained model (python -m fer_jax.convert)
    check_config(c)
    c.model.weights = "none"
    with pytest.raises(ValueError, match="backbone_weights is empty"):
        check_config(c)


def test_train_cli_refuses_a_paper_config_in_one_line_before_writing(tmp_path, monkeypatch, capsys):
    from fer_jax import train as train_cli
    from fer_jax.cli import EXIT_FAILURE

    workdir = tmp_path / "run"
    monkeypatch.setattr(train_cli, "_CONFIG", SimpleNamespace(value=_config("dfew")))
    monkeypatch.setattr(train_cli, "_WORKDIR", SimpleNamespace(value=str(workdir)))
    monkeypatch.setattr(train_cli, "_NO_PROGRESS", SimpleNamespace(value=True))
    assert train_cli.main(["train"]) == EXIT_FAILURE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{FLAG}none" in err[0], err
    assert not workdir.exists()  # refused before anything is written (data not even read)


def test_unexpected_platform_is_refused_in_one_line_before_writing(tmp_path):
    cfg = support.tiny_config(expect_platform="tpu")
    with pytest.raises(ValueError, match=r"expect_platform='tpu' but JAX runs on cpu") as e:
        loop.train(cfg, tmp_path / "run", data=support.ToyData(), progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_unknown_platform_name_is_refused():
    with pytest.raises(
        ValueError, match=r"expect_platform='cuda' must be '' \(any\) or one of cpu, gpu, tpu"
    ):
        check_config(support.tiny_config(expect_platform="cuda"))


def test_expected_platform_trains_and_the_start_up_line_names_it(tmp_path, capsys):
    import jax

    cfg = support.tiny_config(expect_platform="cpu", num_steps=2, eval_every_steps=2)
    assert loop.train(cfg, tmp_path, data=support.ToyData(), progress=False)["status"] == "finished"
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("training "))
    kind = jax.devices()[0].device_kind
    assert f"{jax.device_count()} cpu device(s) ({kind}), 1 process(es)" in line, line


@pytest.mark.parametrize(
    "field, value, refused",
    [
        ("train.batch_size", 2.5, True),  # a count field holding a fraction
        ("train.prefetch_batches", 1.5, True),
        ("data.image_size", 80.0, False),  # a whole number stored as float is still that count
        ("optim.lr", 0.5, False),  # real-valued fields take fractions
        ("train.ema_decay", 0.25, False),
    ],
)
def test_count_fields_refuse_fractions_and_real_fields_take_them(field, value, refused):
    import ml_collections

    section, key = field.split(".")
    cfg = ml_collections.ConfigDict({section: {key: value}})
    if refused:
        with pytest.raises(ValueError, match=rf"config\.{field}={value} must be an integer"):
            check_config(cfg)
    else:
        check_config(cfg)
