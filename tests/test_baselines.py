"""Baselines and DFEW configs: registry build (abstract), shapes, config derivation."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from configs import demo_dfew, dfew, dfew_resnet18_gru, dfew_resnet18_lstm
from fer_jax.models import registry


@pytest.mark.parametrize("mod,cell", [(dfew_resnet18_lstm, "LSTM"), (dfew_resnet18_gru, "GRU")])
def test_rnn_baselines_build_and_output_shape(mod, cell):
    cfg = mod.get_config()
    cfg.data.num_frames, cfg.data.image_size = 3, 32
    model = nnx.eval_shape(lambda: registry.build(cfg, rngs=nnx.Rngs(0)))
    assert cell in type(model.rnn.cell).__name__
    spec = registry.input_spec(cfg)
    assert set(spec) == {"frames"}
    x = jax.ShapeDtypeStruct((2, *spec["frames"][0]), jnp.float32)
    out = nnx.eval_shape(lambda m, f: m(frames=f), model, x)
    assert out["logits"].shape == (2, 7)


def test_dfew_configs_paper_settings_and_derivation():
    c = dfew.get_config()
    assert (c.data.num_frames, c.data.image_size, c.train.batch_size) == (16, 112, 8)
    assert (c.optim.lr, c.optim.weight_decay, c.optim.schedule) == (1e-4, 0.01, "onecycle")
    assert (c.loss.name, c.loss.gamma, c.train.early_stopping_patience) == ("focal", 2.0, 20)
    d = demo_dfew.get_config()
    assert d.model.name == "mambafer" and d.data.image_size < c.data.image_size
    assert d.loss.gamma == c.loss.gamma  # inherited, not copied
    spec = registry.input_spec(d)
    assert spec["frames"][0] == (8, 48, 48, 3) and spec["landmarks"][0] == (8, 68, 2)
