"""Typed model configs, construction without I/O, pretrained targets, one init path, one set of constants."""

import builtins
import dataclasses
import importlib
import io
import os
import pathlib
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from fer_jax.data import constants, schema
from fer_jax.models import attention, baselines, former_dfer, mambafer, mco_e_net, mco_mamba, r3d, registry
from fer_jax.models.config import from_config_dict
from fer_jax.models.resnet import resnet18
from fer_jax.preprocess import landmarks
from tests.test_see_configs import shrink

ALL_CONFIGS = tuple(
    importlib.import_module(f"configs.{p.stem}")
    for p in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))
    if p.stem not in ("__init__", "common")
)
CONFIGS = {m.__name__.rsplit(".", 1)[-1]: m for m in ALL_CONFIGS}
demo_dfew, dfew, dfew_r3d_18, dfew_resnet18_lstm = (
    CONFIGS[n] for n in ("demo_dfew", "dfew", "dfew_r3d_18", "dfew_resnet18_lstm")
)
see, see_reference = CONFIGS["see"], CONFIGS["see_reference"]
MODEL_CONFIG = {
    "mambafer": mambafer.model_config,
    "mco_e_net": mco_e_net.model_config,
    "resnet18_lstm": baselines.model_config,
    "resnet18_gru": baselines.model_config,
    "resnet3d_18": r3d.model_config,
    "r2plus1d_18": r3d.model_config,
    "r3d_18": r3d.model_config,
    "former_dfer": former_dfer.model_config,
}


# -- typed configs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mod", ALL_CONFIGS, ids=lambda m: m.__name__.split(".")[-1])
def test_every_config_key_is_a_known_field(mod):
    c = mod.get_config()
    typed = MODEL_CONFIG[c.model.name](c)
    assert dataclasses.is_dataclass(typed) and typed.name == c.model.name
    for key in c.model.keys():  # every key set is carried over, nested groups included
        value = getattr(typed, key)
        if dataclasses.is_dataclass(value):
            for sub in c.model[key].keys():
                assert getattr(value, sub) == c.model[key][sub] or isinstance(getattr(value, sub), tuple)
        elif isinstance(value, tuple):
            assert value == tuple(c.model[key])
        else:
            assert value == c.model[key], key


@pytest.mark.parametrize("row", list(see.ABLATIONS))
def test_every_see_ablation_row_parses(row):
    typed = mco_e_net.model_config(see.apply_ablation(see.get_config(), row))
    for key, value in see.ABLATIONS[row].items():
        node = typed
        for part in key.split("."):
            node = getattr(node, part)
        assert node == value


def test_defaults_live_in_the_dataclass():
    c = see.get_config()
    for key in list(c.model.keys()):
        if key not in ("name", "num_classes"):
            del c.model[key]
    typed = mco_e_net.model_config(c)
    assert typed.moe == mco_e_net.MoEConfig() and typed.moe.num_experts == 8 and typed.mjos.params == "BC"
    assert (typed.num_frames, typed.image_size) == (2, 100)  # from config.data
    assert from_config_dict(mambafer.MambaFERConfig, {"name": "mambafer"}).mlp_dims == (512, 256, 128)


def test_unknown_keys_raise_one_line_errors_naming_them():
    c = see.get_config()
    c.model.moe.num_expert = 3
    with pytest.raises(ValueError, match=r"^unknown config key model\.moe\.num_expert; known: .*num_experts"):
        mco_e_net.model_config(c)
    c = dfew.get_config()
    c.model.use_cbma = False
    with pytest.raises(ValueError, match=r"unknown config key model\.use_cbma; known: .*use_cbam") as e:
        registry.build(c, rngs=nnx.Rngs(0))
    assert "\n" not in str(e.value)
    c = see.get_config()
    c.model.num_frames = 4  # m is a data setting
    with pytest.raises(ValueError, match=r"model\.num_frames cannot be set: .* data\.num_frames"):
        mco_e_net.model_config(c)


def test_values_are_type_checked_and_lists_become_tuples():
    with pytest.raises(ValueError, match=r"config key model\.d_model must be int, got '8'"):
        from_config_dict(mambafer.MambaFERConfig, {"d_model": "8"})
    with pytest.raises(ValueError, match=r"model\.moe must be a group"):
        from_config_dict(mco_e_net.MCOENetConfig, {"moe": 3})
    typed = from_config_dict(mambafer.MambaFERConfig, {"mlp_dims": [8, 4], "dropout": 0, "name": "mambafer"})
    assert typed.mlp_dims == (8, 4) and isinstance(typed.dropout, float)
    assert from_config_dict(mco_e_net.MCOENetConfig, {"dt_rank": 3}).dt_rank == 3
    hash(typed)  # frozen and hashable


# -- construction reads no file; pretrained targets ------------------------------------------------------
TINY_MAMBAFER = dict(backbone_width=0.25, backbone_depth=0.35, d_model=16, mhsa_heads=2, mlp_dims=(8,))


def _mambafer_config(**model):
    c = demo_dfew.get_config()
    c.model.update({**TINY_MAMBAFER, **model})
    return c


def _mco_config(base=see, **model):
    c = shrink(base.get_config())
    c.model.moe.num_experts = 4
    c.model.update(model)
    return c


def _lstm_config(**model):
    c = dfew_resnet18_lstm.get_config()
    c.data.num_frames, c.data.image_size = 2, 32
    c.model.update(model)
    return c


def _refuse(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"model construction touched the file system: {what}{args[:1]}")

    return refuse


def test_build_never_touches_the_filesystem(tmp_path):
    missing = str(tmp_path / "no_such_weights")
    configs = [
        _mambafer_config(backbone_weights=missing),
        _mco_config(backbone_weights=missing, rgb_backbone_weights=missing + "_rgb"),
        _mco_config(see_reference, backbone_weights=missing),
        _lstm_config(backbone_weights=missing),
    ]
    for c in configs:  # the model modules are imported before the file system is closed
        registry.input_spec(c)
    with pytest.MonkeyPatch.context() as mp:
        for mod, name in [
            (builtins, "open"),
            (io, "open"),
            (os, "open"),
            (os, "stat"),
            (os, "listdir"),
            (os, "scandir"),
            (os.path, "exists"),
            (pathlib.Path, "exists"),
            (pathlib.Path, "is_dir"),
        ]:
            mp.setattr(mod, name, _refuse(name))
        mp.delitem(sys.modules, "fer_jax.convert", raising=False)
        for c in configs:
            model = nnx.eval_shape(lambda c=c: registry.build(c, rngs=nnx.Rngs(0)))
            assert registry.pretrained_targets(model, c)  # names the missing directory, reads nothing
        assert "fer_jax.convert" not in sys.modules


def test_model_modules_do_no_io_and_never_import_convert():
    root = pathlib.Path(mambafer.__file__).parent
    for path in sorted(root.glob("*.py")):
        src = path.read_text()
        banned_list = (
            "import fer_jax.convert",
            "from fer_jax.convert",
            "from fer_jax import convert",
            "open(",
        )
        for banned in (*banned_list, "np.load", "epath", "import pathlib", "import os"):
            assert banned not in src, (path.name, banned)


def test_pretrained_targets_mambafer():
    c = _mambafer_config(backbone_weights="/w/effnet")
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    targets = registry.pretrained_targets(model, c)
    assert len(targets) == 1 and targets[0][0] is model.backbone and targets[0][1] == "/w/effnet"
    for off in ("", "none", "None"):
        c.model.backbone_weights = off
        assert registry.pretrained_targets(model, c) == []


def test_pretrained_targets_mco_e_net_both_branches_and_override():
    c = _mco_config(backbone_weights="/w/r18", event_backbone_weights="/w/r18_event")
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    got = {d: m for m, d in registry.pretrained_targets(model, c)}
    assert got["/w/r18"] is model.backbones["rgb"] and got["/w/r18_event"] is model.backbones["event"]
    assert len(got) == 2
    # only one branch named: the other stays random
    c = _mco_config(rgb_backbone_weights="/w/rgb")
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    targets = registry.pretrained_targets(model, c)
    assert len(targets) == 1 and targets[0][0] is model.backbones["rgb"] and targets[0][1] == "/w/rgb"
    # reference tokenisation: four ImageNet-headed ResNet-18s, first / last frame per modality
    c = _mco_config(see_reference, backbone_weights="/w/r18", rgb_backbone_weights="/w/rgb")
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    got = [
        (name, d)
        for name, b in model.backbones.items()
        for m, d in registry.pretrained_targets(model, c)
        if m is b
    ]
    assert sorted(got) == [
        ("event_first", "/w/r18"),
        ("event_last", "/w/r18"),
        ("rgb_first", "/w/rgb"),
        ("rgb_last", "/w/rgb"),
    ]
    # RGB-only ablation: no event backbone, so no event target
    c = _mco_config(modalities="rgb", backbone_weights="/w/r18")
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    assert [(m, d) for m, d in registry.pretrained_targets(model, c)] == [(model.backbones["rgb"], "/w/r18")]


def test_pretrained_targets_baselines():
    c = _lstm_config(backbone_weights="/w/r18")
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    targets = registry.pretrained_targets(model, c)
    assert len(targets) == 1 and targets[0][0] is model.backbone and targets[0][1] == "/w/r18"
    c = dfew_r3d_18.get_config()
    c.model.width = 8
    model = nnx.eval_shape(lambda: registry.build(c, rngs=nnx.Rngs(0)))
    assert registry.pretrained_targets(model, c) == []
    c.model.backbone_weights = "/w/r3d"  # torchvision's Kinetics weights, converted
    assert registry.pretrained_targets(model, c) == [(model.backbone, "/w/r3d")]


# -- one init path ------------------------------------------------------------------------------------------
def _params(state):
    return {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(state)}


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: resnet18(num_classes=10, width=16, rngs=nnx.Rngs(3)), id="resnet18"),
        # the SSM's dt bias (exp / log / expm1) is the part that rounded differently under jit
        pytest.param(lambda: mco_mamba.MCOMamba(8, d_state=4, rngs=nnx.Rngs(3)), id="mco_mamba"),
        # narrow backbones: the whole model's init path at a fraction of the full width's compile time
        pytest.param(lambda: registry.build(_mco_config(backbone_width=8), rngs=nnx.Rngs(3)), id="mco_e_net"),
    ],
)
def test_same_seed_same_parameters_eager_and_jitted(build):
    eager = _params(nnx.state(build(), nnx.Not(nnx.RngState)))
    jitted = _params(jax.jit(lambda: nnx.state(build(), nnx.Not(nnx.RngState)))())
    abstract = nnx.state(nnx.eval_shape(build), nnx.Not(nnx.RngState))
    assert eager.keys() == jitted.keys() == {k for k, _ in nnx.to_flat_state(abstract)}
    for k in eager:
        np.testing.assert_array_equal(eager[k], jitted[k], err_msg=str(k))


# -- facts once ---------------------------------------------------------------------------------------------
def test_one_landmark_template_and_one_set_of_names():
    assert constants.TEMPLATE_68.shape == (constants.NUM_LANDMARKS, 2) == (68, 2)
    assert attention.CANONICAL_LANDMARKS is constants.TEMPLATE_68
    assert landmarks.TEMPLATE_68 is constants.TEMPLATE_68 and landmarks.FACE_MARGIN == constants.FACE_MARGIN
    assert attention.NUM_LANDMARKS == constants.NUM_LANDMARKS
    assert schema.DFEW_CLASS_NAMES is constants.DFEW_CLASS_NAMES
    assert schema.SEE_CLASS_NAMES is constants.SEE_CLASS_NAMES
    assert schema.LIGHTING_NAMES is constants.LIGHTING_NAMES
    assert not constants.TEMPLATE_68.flags.writeable
    # missing landmarks are filled with the template the pipeline stores
    filled = attention.fill_missing_landmarks(np.zeros((2, 68, 2), np.float32))
    np.testing.assert_array_equal(np.asarray(filled), np.broadcast_to(constants.TEMPLATE_68, (2, 68, 2)))
