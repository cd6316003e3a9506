"""Baselines and DFEW configs: registry build (abstract), shapes, config derivation."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from configs import demo_dfew, dfew, dfew_r3d_18, dfew_resnet18_gru, dfew_resnet18_lstm
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
    assert spec["frames"][0] == (4, 64, 64, 3) and spec["landmarks"][0] == (4, 68, 2)


def test_r3d_18_matches_torchvision_structure():
    from fer_jax.models.r3d import R3D18

    # torchvision's video.r3d_18 (400 Kinetics classes) documents 33,371,472 parameters
    model = nnx.eval_shape(lambda: R3D18(num_classes=400, rngs=nnx.Rngs(0)))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == 33_371_472
    # 16 x 112 x 112 -> stage strides (1, 2, 2) stem, then 2 in every axis per stage: layer4 (2, 7, 7, 512)
    feats = nnx.eval_shape(
        lambda m, f: m.features(f), model, jax.ShapeDtypeStruct((1, 16, 112, 112, 3), jnp.float32)
    )
    assert feats.shape == (1, 2, 7, 7, 512)


def test_r3d_18_config_trains_a_step_and_gradients_reach_every_parameter():
    cfg = dfew_r3d_18.get_config()
    cfg.model.width = 8
    cfg.data.num_frames, cfg.data.image_size = 4, 32
    model = registry.build(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, *registry.input_spec(cfg)["frames"][0]))
    labels = jnp.array([0, 3])

    def loss(m):
        logits = m(frames=x)["logits"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    grads = nnx.grad(loss)(model)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.any(g != 0)) for g in leaves)
    model.eval()
    a, b = model(frames=x)["logits"], model(frames=x)["logits"]
    assert a.shape == (2, 7) and bool(jnp.all(a == b))  # eval is deterministic
