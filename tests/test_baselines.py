"""Paper 1's Table 2 baselines: structure (parameter counts, feature-map sizes), GMACs against the paper's
column, one training step, and ``model.backbone_weights`` filling each baseline's backbone from a converted
checkpoint (the calls the Run makes: ``registry.pretrained_targets`` + ``convert.load_backbone_into``)."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from benchmarks.flops import count_macs, measure
from configs import (
    dfew,
    dfew_former_dfer,
    dfew_r2plus1d_18,
    dfew_r3d_18,
    dfew_resnet3d_18,
    dfew_resnet18_gru,
    dfew_resnet18_lstm,
)
from fer_jax.convert import load_backbone_into
from fer_jax.convert.__main__ import main as convert_main
from fer_jax.convert.tables import key_table
from fer_jax.models import r3d, registry
from fer_jax.models.r3d import VideoResNet, r2plus1d_18, r3d_18, resnet3d_18

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from parity import golden_state_dict, load_golden  # noqa: E402

VIDEO_CONFIGS = [dfew_resnet3d_18, dfew_r2plus1d_18, dfew_r3d_18, dfew_former_dfer]


def _params(model) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


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


@pytest.mark.parametrize("mod", VIDEO_CONFIGS, ids=lambda m: m.__name__.split(".")[-1])
def test_video_baselines_take_frames_only_and_give_logits(mod):
    cfg = mod.get_config()
    assert cfg.data.image_size == dfew.get_config().data.image_size  # the same shards as MambaFER
    cfg.data.num_frames, cfg.data.image_size = 4, 32
    model = nnx.eval_shape(lambda: registry.build(cfg, rngs=nnx.Rngs(0)))
    spec = registry.input_spec(cfg)
    assert set(spec) == {"frames"}
    x = jax.ShapeDtypeStruct((2, *spec["frames"][0]), jnp.float32)
    assert nnx.eval_shape(lambda m, f: m(frames=f), model, x)["logits"].shape == (2, 7)


@pytest.mark.parametrize(
    "factory,params,layer4",
    [
        # torchvision documents 31,505,325 (r2plus1d_18) and 33,371,472 (r3d_18) parameters with 400 classes
        (r2plus1d_18, 31_505_325, (2, 7, 7)),
        (r3d_18, 33_371_472, (2, 7, 7)),
        # Hara's resnet-18 with his 700-class Kinetics head: 7x7x7 stem + max-pool -> layer4 (1, 4, 4)
        (resnet3d_18, 33_563_004, (1, 4, 4)),
    ],
)
def test_video_resnets_match_the_published_structure(factory, params, layer4):
    model = nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0)))
    assert _params(model) == params
    x = jax.ShapeDtypeStruct((1, 16, 112, 112, 3), jnp.float32)
    assert nnx.eval_shape(lambda m, f: m.features(f), model, x).shape == (1, *layer4, 512)


def test_hara_key_table_uses_his_module_names():
    # Hara's checkpoints (r3d18_K_200ep.pth) name modules conv1, bn1, layerN.M.{conv,bn}{1,2}, downsample
    model = nnx.eval_shape(lambda: resnet3d_18(rngs=nnx.Rngs(0)))
    keys = {e.torch_key for e in key_table("resnet3d_18", model)}
    assert {"conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"} <= keys
    assert "fc.weight" in keys and not any(k.startswith("stem.") for k in keys)
    # torchvision's layout for the other two: stem.N and conv1.0 / conv1.1 Sequentials
    tv = {
        e.torch_key for e in key_table("r2plus1d_18", nnx.eval_shape(lambda: r2plus1d_18(rngs=nnx.Rngs(0))))
    }
    assert {"stem.0.weight", "stem.3.weight", "stem.4.running_mean", "layer1.0.conv1.0.3.weight"} <= tv
    assert "layer1.0.conv2.1.weight" in tv and "layer2.0.downsample.1.running_var" in tv


# paper 1's Table 2 "FLOPs (G)" are GMACs at 16 x 112 x 112 (MambaFER's at 128, see the dfew test below);
# thop / torchvision counting (padding taps included). Former-DFER's published 9.11 and R(2+1)D-18's 42.36
# are not reproduced by any count of the authors' / torchvision's networks (8.30, 40.52 = torchvision's
# documented figure): asserted at our count, the difference is documented in docs/ablations.md.
@pytest.mark.parametrize(
    "mod,gmacs",
    [
        (dfew_resnet3d_18, 8.31),
        (dfew_r2plus1d_18, 40.52),
        (dfew_r3d_18, 40.70),
        (dfew_resnet18_lstm, 7.79),
        (dfew_resnet18_gru, 7.78),
        (dfew_former_dfer, 8.30),
    ],
    ids=lambda v: v.__name__.split(".")[-1] if hasattr(v, "__name__") else str(v),
)
def test_table2_gmacs_at_16x112(mod, gmacs):
    cfg = mod.get_config()
    cfg.data.image_size = 112
    assert measure(cfg, xla=False)["gmacs"] == pytest.approx(gmacs, abs=0.006)


def test_count_macs_counts_padding_taps_and_matmuls():
    # 3x3 conv, 4 -> 8 channels, on 5x5 with padding 1: 25 outputs x 8 channels x 9 taps x 4 inputs,
    # the border outputs' padding taps included; the bias add is no MAC
    def conv(x, w):
        y = jax.lax.conv_general_dilated(
            x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + 1.0

    x, w = jax.ShapeDtypeStruct((1, 5, 5, 4), jnp.float32), jax.ShapeDtypeStruct((3, 3, 4, 8), jnp.float32)
    assert count_macs(conv, x, w) * 1e9 == 25 * 8 * 9 * 4
    a, b = jax.ShapeDtypeStruct((2, 3, 6), jnp.float32), jax.ShapeDtypeStruct((2, 6, 5), jnp.float32)
    assert count_macs(lambda p, q: jnp.einsum("bij,bjk->bik", p, q), a, b) * 1e9 == 2 * 3 * 5 * 6
    # a scan body counts once per step
    c0, m = jax.ShapeDtypeStruct((3, 6), jnp.float32), jax.ShapeDtypeStruct((6, 6), jnp.float32)
    steps = lambda c, p: jax.lax.scan(lambda h, _: (h @ p, None), c, None, length=4)[0]  # noqa: E731
    assert count_macs(steps, c0, m) * 1e9 == 4 * 3 * 6 * 6


@pytest.mark.parametrize("mod", [dfew_resnet3d_18, dfew_former_dfer], ids=["resnet3d_18", "former_dfer"])
def test_config_trains_a_step_and_gradients_reach_every_parameter(mod):
    cfg = mod.get_config()
    if "width" in cfg.model:
        cfg.model.width = 8
    cfg.data.num_frames, cfg.data.image_size = 4, 32
    model = registry.build(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, *registry.input_spec(cfg)["frames"][0]))
    labels = jnp.array([0, 3])

    def loss(m):
        logits = m(frames=x)["logits"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    grads = nnx.jit(nnx.grad(loss))(model)  # one program: eager 3D convs compile op by op
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.any(g != 0)) for g in leaves)
    model.eval()
    forward = nnx.jit(lambda m, v: m(frames=v)["logits"])
    a, b = forward(model, x), forward(model, x)
    assert a.shape == (2, 7) and bool(jnp.all(a == b))  # eval is deterministic


# -- model.backbone_weights ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The golden (seeded) resnet18 and r2plus1d_18 state dicts, converted by the CLI: ``{arch: (state
    dict, directory)}``."""
    work, out = tmp_path_factory.mktemp("weights"), {}
    for arch in ("resnet18", "r2plus1d_18"):
        sd = golden_state_dict(load_golden(arch))
        save_file(sd, str(work / f"{arch}.safetensors"))
        argv = ["--arch", arch, "--weights", str(work / f"{arch}.safetensors"), "--out", str(work / arch)]
        assert convert_main(argv) == 0
        out[arch] = (sd, work / arch)
    return out


@pytest.mark.parametrize(
    "mod,arch,backbone,checks",
    [
        (dfew_resnet18_lstm, "resnet18", "backbone", [("conv1.kernel", "conv1.weight")]),
        (dfew_resnet18_gru, "resnet18", "backbone", [("layer4.1.bn2.var", "layer4.1.bn2.running_var")]),
        (
            dfew_r2plus1d_18,
            "r2plus1d_18",
            "backbone",
            [
                ("conv1.spatial.kernel", "stem.0.weight"),
                ("layer3.0.bn1.mean", "layer3.0.conv1.1.running_mean"),
            ],
        ),
        (
            dfew_former_dfer,
            "resnet18",
            "net.s_former.resnet",
            [("layer3.1.conv2.kernel", "layer3.1.conv2.weight")],
        ),
    ],
    ids=["resnet18_lstm", "resnet18_gru", "r2plus1d_18", "former_dfer"],
)
def test_baselines_load_backbone_weights(converted, mod, arch, backbone, checks):
    sd, directory = converted[arch]
    cfg = mod.get_config()
    cfg.data.num_frames, cfg.data.image_size = 4, 32
    cfg.model.backbone_weights = str(directory)
    # abstract model: loading replaces exactly the backbone's variables by concrete arrays
    model = nnx.eval_shape(lambda: registry.build(cfg, rngs=nnx.Rngs(0)))
    targets = registry.pretrained_targets(model, cfg)
    module = model
    for part in backbone.split("."):
        module = getattr(module, part)
    assert [(m is module, d) for m, d in targets] == [(True, str(directory))]
    for target, d in targets:
        load_backbone_into(target, d)
    for nnx_key, torch_key in checks:
        var = module
        for part in nnx_key.split("."):
            var = var[int(part)] if part.isdigit() else getattr(var, part)
        want = sd[torch_key]
        want = np.transpose(want, (*range(2, want.ndim), 1, 0)) if want.ndim >= 4 else want
        np.testing.assert_array_equal(np.asarray(var[...]), want)
    loaded = nnx.state(module, (nnx.Param, nnx.BatchStat))
    assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(loaded))
    # the new 7-class head is not touched (still the abstract shape, not the checkpoint's 400 / 1000 classes)
    head = model.net.fc if hasattr(model, "net") else model.fc
    head_leaves = jax.tree.leaves(nnx.state(head, nnx.Param))
    assert all(isinstance(v, jax.ShapeDtypeStruct) for v in head_leaves) and head.kernel.shape[-1] == 7


def test_video_resnet_refuses_a_wrong_input():
    model = nnx.eval_shape(lambda: VideoResNet("r3d_18", num_classes=None, width=8, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"expected \(B, T, H, W, 3\) input"):
        nnx.eval_shape(lambda m, f: m(f), model, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
    cfg = dfew_resnet3d_18.get_config()
    cfg.model.name = "resnet18_lstm"
    with pytest.raises(ValueError, match="model.name must be one of"):
        r3d.model_config(cfg)
