"""Every MCO-E Net config and every ablation row of the paper's Tables 2, 5-8 builds and runs forward."""

import re

import jax
import numpy as np
import pytest
from flax import nnx

from configs import demo_see, demo_see_rgb, dsee, see, see_reference
from fer_jax.models import registry


def shrink(c):
    """Tiny sizes for CPU tests: 32 px (1x1 maps), d_model 8, N 4, light experts."""
    c.data.image_size = 32
    m = c.model
    if m.tokenization == "spatial":
        m.d_model = 8
    m.d_state = 4
    m.moe.router_hidden = 8
    m.moe.deep_depth = 1
    m.moe.focal_hidden = 8
    m.mlp_hidden = 8
    m.neck_dim = 8
    return c


def abstract_forward(config, batch=2):
    """Builds the model and traces its forward pass (shapes and dtypes of every stage, no FLOPs spent)."""
    model = nnx.eval_shape(lambda: registry.build(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    inputs = registry.dummy_inputs(config, batch)
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(**x), state, inputs)
    return model, out


# one row per code path runs in the fast suite; all rows (same checks) run with -m slow
FAST_ROWS = (
    "table2_A",
    "table2_C",
    "table2_E",
    "table2_F",
    "table2_I",
    "table6_C",
    "table7_A",
    "table7_J",
    "table8_A",
)


@pytest.mark.parametrize(
    "row", [r if r in FAST_ROWS else pytest.param(r, marks=pytest.mark.slow) for r in see.ABLATIONS]
)
def test_every_ablation_row_builds_and_runs_forward(row):
    config = shrink(see.apply_ablation(see.get_config(), row))
    model, out = abstract_forward(config)
    assert out["logits"].shape == (2, 7) and out["logits"].dtype == np.float32
    assert out["aux_loss"].shape == ()
    over = see.ABLATIONS[row]
    if over.get("head", "moe") == "moe":
        n_e = over.get("moe.num_experts", 8)
        assert out["stats"]["expert_weights"].shape == (2, n_e)
        types = over.get("moe.expert_types", "deep,attention,focal").split(",")
        assert set(model.head.types) == set(types)
    else:
        assert "expert_weights" not in out["stats"]
    if "modalities" in over:
        assert set(model.backbones.keys()) == {over["modalities"]}
    if not over.get("use_mamba", True):
        assert model.mamba is None
    elif "mjos.params" in over:
        assert model.mamba.params == over["mjos.params"]
        assert model.mamba.mode == over.get("mjos.mode", "fuse")
    assert (model.mcib is None) == (over.get("fusion") == "add" or "modalities" in over)


def test_docstring_lists_every_ablation_override():
    doc = see.__doc__
    for row, over in see.ABLATIONS.items():
        table, letter = row.replace("table", "").split("_")
        section = doc.split(f"Table {table} ")[1].split("\nTable ")[0]
        line = re.search(rf"^  {letter}  .*$", section, re.M)
        assert line, row
        for key, value in over.items():
            assert f"model.{key}={value}" in line.group(0), (row, line.group(0))
        if not over:
            assert "(defaults)" in line.group(0)


def test_unknown_ablation_raises():
    with pytest.raises(ValueError):
        see.apply_ablation(see.get_config(), "table9_A")


def test_reference_config_uses_500_tokens_of_width_4_and_official_training():
    config = shrink(see_reference.get_config())
    model, out = abstract_forward(config)
    assert out["logits"].shape == (2, 7)
    graphdef, state = nnx.split(model)
    x = registry.dummy_inputs(config, 3)["rgb"]
    tokens = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).tokens("rgb", x), state, x)
    assert tokens.shape == (3, 500, 4)
    assert model.head.types[:3] == ("focal", "attention", "deep")
    assert model.orthogonal_weight == 0.0
    assert (config.optim.schedule, config.optim.step_gamma, config.train.num_epochs) == ("step", 0.94, 100)
    assert config.eval.passes == 20 and config.loss.name == "ce"


@pytest.mark.parametrize("module", [dsee, demo_see])
def test_training_configs_have_the_shared_fields_and_build(module):
    config = module.get_config()
    assert config.model.name == "mco_e_net" and config.loss.name == "ce"
    assert config.data.dataset in ("see", "dsee") and config.data.num_frames == 2
    _, out = abstract_forward(shrink(config))
    assert out["logits"].shape == (2, 7)


def test_demo_rgb_differs_from_demo_only_in_modalities():
    a, b = demo_see.get_config().to_dict(), demo_see_rgb.get_config().to_dict()
    assert b["model"].pop("modalities") == "rgb" and a["model"].pop("modalities") == "rgb+event"
    assert a == b
    # same input spec: the same shards feed both
    assert registry.input_spec(demo_see.get_config()) == registry.input_spec(demo_see_rgb.get_config())
