"""Weight converter: key tables against torchvision's state-dict layout, the CLI's errors, loading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from parity import golden_state_dict, load_golden, torch_manifest  # noqa: E402

from fer_jax.convert import ConversionError, load_backbone_into, load_pretrained, read_meta  # noqa: E402
from fer_jax.convert.__main__ import main  # noqa: E402
from fer_jax.convert.tables import (  # noqa: E402
    ARCHS,
    adapt_first_conv,
    conv_oihw_to_hwio,
    key_table,
    linear_out_in_to_in_out,
)
from fer_jax.models.resnet import resnet18, resnet34  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_transpose_rules_follow_torch_layouts():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3, 2, 4))  # torch conv (out, in, kh, kw)
    k = conv_oihw_to_hwio(w)
    assert k.shape == (2, 4, 3, 5)
    for o, i, h, x in [(0, 0, 0, 0), (4, 2, 1, 3), (2, 1, 0, 2)]:
        assert k[h, x, i, o] == w[o, i, h, x]
    lin = rng.standard_normal((7, 3))  # torch linear (out, in); y = x @ W.T
    x = rng.standard_normal((2, 3))
    np.testing.assert_allclose(x @ linear_out_in_to_in_out(lin), x @ lin.T)
    with pytest.raises(ValueError):
        conv_oihw_to_hwio(lin)


@pytest.mark.parametrize(
    "arch",
    [
        pytest.param(a, marks=pytest.mark.slow) if a in ("efficientnet_v2_m", "efficientnet_v2_l") else a
        for a in sorted(ARCHS)
    ],
)
def test_key_table_is_exactly_torchvision_state_dict(arch):
    torch_shapes = {k: s for k, s in torch_manifest(arch) if not k.endswith("num_batches_tracked")}
    model = nnx.eval_shape(lambda: ARCHS[arch](rngs=nnx.Rngs(0)))
    table = key_table(arch, model)
    assert sorted(e.torch_key for e in table) == sorted(torch_shapes)
    assert len({e.nnx_path for e in table}) == len(table)
    # every Param / BatchStat of the port is filled by exactly one row
    n_vars = len(nnx.to_flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat))))
    assert n_vars == len(table)
    for e in table:
        var = model
        for part in e.nnx_path:
            var = var[part] if isinstance(part, int) else getattr(var, part)
        assert e.transform(np.zeros(torch_shapes[e.torch_key])).shape == var.shape, e.torch_key


def test_adapt_first_conv_keeps_the_response_to_grey_inputs():
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    for n in (1, 2, 5):
        a = adapt_first_conv(w, n)
        assert a.shape == (4, n, 3, 3)
        # an input equal in all channels sees sum_c w[:, c], as the RGB filter on a grey image does
        np.testing.assert_allclose(a.sum(axis=1), w.sum(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[:, 0], w.mean(axis=1) * 3 / n, rtol=1e-6)
    assert adapt_first_conv(w, 3) is w
    with pytest.raises(ValueError):
        adapt_first_conv(w[:, :2], 4)


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """The golden ResNet-18 state dict as .safetensors, and its conversion by the CLI."""
    work = tmp_path_factory.mktemp("convert")
    sd = golden_state_dict(load_golden("resnet18"))
    weights = work / "resnet18.safetensors"
    save_file(sd, str(weights))
    out = work / "converted"
    assert main(["--arch", "resnet18", "--weights", str(weights), "--out", str(out)]) == 0
    return sd, weights, out, work


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    return err


def test_checkpoint_holds_transposed_torch_weights(r18):
    sd, _, out, _ = r18
    assert read_meta(out)["arch"] == "resnet18" and read_meta(out)["num_classes"] == 1000
    model = load_pretrained("resnet18", out)
    np.testing.assert_array_equal(model.conv1.kernel[...], sd["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        model.layer2[0].downsample[1].var[...], sd["layer2.0.downsample.1.running_var"]
    )
    np.testing.assert_array_equal(model.fc.kernel[...], sd["fc.weight"].T)


def test_load_backbone_into_a_bigger_model_drops_the_head(r18):
    sd, _, out, _ = r18

    class TwoStream(nnx.Module):
        def __init__(self, rngs):
            self.rgb = resnet18(num_classes=None, rngs=rngs)
            self.proj = nnx.Linear(512, 7, rngs=rngs)

    model = TwoStream(nnx.Rngs(0))
    proj_before = np.asarray(model.proj.kernel[...])
    load_backbone_into(model.rgb, out)
    np.testing.assert_array_equal(model.rgb.layer4[1].bn2.scale[...], sd["layer4.1.bn2.weight"])
    np.testing.assert_array_equal(model.proj.kernel[...], proj_before)


def test_load_backbone_into_lists_mismatches(r18):
    _, _, out, _ = r18
    with pytest.raises(
        ConversionError, match=r"shape mismatches: conv1\.kernel \(7, 7, 3, 64\) vs \(7, 7, 2, 64\)"
    ):
        load_backbone_into(nnx.eval_shape(lambda: resnet18(in_channels=2, rngs=nnx.Rngs(0))), out)
    with pytest.raises(ConversionError, match=r"missing keys: layer1\.2\.bn1\.bias"):
        load_backbone_into(nnx.eval_shape(lambda: resnet34(num_classes=None, rngs=nnx.Rngs(0))), out)
    with pytest.raises(ConversionError, match="holds resnet18 weights"):
        load_pretrained("resnet34", out)


def test_new_head_size_keeps_the_backbone(r18):
    sd, _, out, _ = r18
    model = load_pretrained("resnet18", out, num_classes=7)
    assert model.fc.kernel.shape == (512, 7)
    np.testing.assert_array_equal(
        model.layer3[0].conv2.kernel[...], sd["layer3.0.conv2.weight"].transpose(2, 3, 1, 0)
    )


def test_in_channels_adapts_the_first_conv(r18):
    sd, weights, out3, work = r18
    out2 = work / "converted_2ch"
    assert (
        main(["--arch", "resnet18", "--weights", str(weights), "--out", str(out2), "--in-channels", "2"]) == 0
    )
    model2 = load_pretrained("resnet18", out2, num_classes=None)
    assert model2.in_channels == 2 and read_meta(out2)["in_channels"] == 2
    model3 = load_pretrained("resnet18", out3, num_classes=None)
    grey = jax.random.normal(jax.random.key(0), (1, 16, 16, 1))
    np.testing.assert_allclose(
        model2.conv1(np.repeat(grey, 2, axis=-1)), model3.conv1(np.repeat(grey, 3, axis=-1)), atol=1e-5
    )
    # the same adaptation when an RGB checkpoint is loaded into a 2-channel backbone
    event = load_backbone_into(
        resnet18(in_channels=2, num_classes=None, rngs=nnx.Rngs(1)), out3, adapt_in_channels=True
    )
    np.testing.assert_allclose(event.conv1.kernel[...], model2.conv1.kernel[...], rtol=1e-6)


def test_cli_rejects_bad_weight_files(r18, capsys, tmp_path):
    sd, weights, _, _ = r18
    out = str(tmp_path / "out")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "cannot read truncated.safetensors" in _cli_error(
        capsys, ["--arch", "resnet18", "--weights", str(truncated), "--out", out]
    )
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    _cli_error(capsys, ["--arch", "resnet18", "--weights", str(garbage), "--out", out])
    err = _cli_error(capsys, ["--arch", "resnet34", "--weights", str(weights), "--out", out])
    assert "missing keys: layer1.2.bn1.bias" in err and "unexpected" not in err
    partial = dict(sd, **{"extra.weight": np.zeros(3, np.float32)})
    del partial["fc.bias"], partial["layer1.0.bn1.running_var"]
    save_file(partial, str(tmp_path / "partial.safetensors"))
    err = _cli_error(
        capsys, ["--arch", "resnet18", "--weights", str(tmp_path / "partial.safetensors"), "--out", out]
    )
    assert "2 missing keys: fc.bias, layer1.0.bn1.running_var; 1 unexpected keys: extra.weight" in err
    bad_shape = dict(sd, **{"layer1.0.conv1.weight": np.zeros((64, 64, 1, 3), np.float32)})
    save_file(bad_shape, str(tmp_path / "shape.safetensors"))
    err = _cli_error(
        capsys, ["--arch", "resnet18", "--weights", str(tmp_path / "shape.safetensors"), "--out", out]
    )
    assert "shape mismatches: layer1.0.conv1.weight (64, 64, 1, 3)" in err
    np.savez(tmp_path / "w.npz", **sd)
    assert "unsupported weights format" in _cli_error(
        capsys, ["--arch", "resnet18", "--weights", str(tmp_path / "w.npz"), "--out", out]
    )
    assert "not found" in _cli_error(
        capsys, ["--arch", "resnet18", "--weights", str(tmp_path / "none.safetensors"), "--out", out]
    )
    assert not (tmp_path / "out" / "state").exists()


def test_cli_refuses_to_overwrite_and_bad_channel_counts(r18, capsys):
    _, weights, out, _ = r18
    assert "already exists" in _cli_error(
        capsys, ["--arch", "resnet18", "--weights", str(weights), "--out", str(out)]
    )
    assert "in_channels must be >= 1" in _cli_error(
        capsys,
        ["--arch", "resnet18", "--weights", str(weights), "--out", str(out) + "_0", "--in-channels", "0"],
    )


def test_pth_needs_torch_or_reads_with_weights_only(r18, capsys, tmp_path):
    pth = tmp_path / "w.pth"
    pth.write_bytes(b"not a zip")
    err = _cli_error(capsys, ["--arch", "resnet18", "--weights", str(pth), "--out", str(tmp_path / "o")])
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "needs torch" in err
    else:
        assert "torch.load" in err


def test_cli_help_and_module_entry_point(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--in-channels" in capsys.readouterr().out
    # one real `python -m` run (a subprocess imports jax again: ~3 s), on bad input
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_jax.convert",
            "--arch",
            "resnet18",
            "--weights",
            "missing.safetensors",
            "--out",
            "x",
        ],
        cwd=REPO,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "not found" in bad.stderr
