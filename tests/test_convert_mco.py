"""The authors' MCO-E Net state dict -> ``mco_e_net_reference``: forward parity with their code, the
converter's key handling (aliased A, forward dt bias, unread leaves) and its one-line errors.

The golden (``tests/golden/mco_e_net_reference.npz``, from ``tests/golden/make_mco_goldens.py`` running
their model at commit a980446 on CPU) stores inputs, logits and intermediates; the weights are redrawn
here from the seed (``mco_e_net_reference_weights``), written as .safetensors and converted with the CLI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

# LLVM at -O0 and without its expensive passes (FAST_COMPILE): the four ResNet-18s compile in about half the
# CPU time; the HLO is the same, float rounding may differ in the last bits (far below TOLERANCE)
from compile_support import FAST_COMPILE
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from mco_e_net_reference_weights import make_state_dict  # noqa: E402
from parity import checked_state_dict  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from configs import see_reference  # noqa: E402
from fer_jax.convert import ConversionError, load_pretrained, read_meta  # noqa: E402
from fer_jax.convert import mco as mco_convert  # noqa: E402
from fer_jax.convert.__main__ import main as convert_main  # noqa: E402
from fer_jax.evaluate import main as evaluate_main  # noqa: E402
from fer_jax.models import hce_moe  # noqa: E402
from fer_jax.training.loop import train  # noqa: E402
from fer_jax.training.run import Run  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "mco_e_net_reference.npz"
# the zero-step run's evaluation and evaluate's compile one eval step: the second reads the first's back
pytestmark = pytest.mark.usefixtures("module_compile_cache")
TOLERANCE = 1e-4

MAMBA = mco_convert.MAMBA


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def state_dict(golden):
    manifest = [(k, tuple(s)) for k, s in json.loads(str(golden["manifest"]))]
    return checked_state_dict(make_state_dict(manifest), golden, "make_mco_goldens.py")


@pytest.fixture(scope="module")
def converted(state_dict, tmp_path_factory):
    work = tmp_path_factory.mktemp("mco")
    weights = work / "mcoe.safetensors"
    save_file(state_dict, str(weights))
    out = work / "converted"
    assert convert_main(["--arch", "mco_e_net_reference", "--weights", str(weights), "--out", str(out)]) == 0
    return out


def test_golden_is_from_the_named_commit(golden):
    assert str(golden["commit"]) == "a980446cda59309ca040c88b286abd11f07d5c20"


def _stages(model, rgb, event):
    """The logits, router probabilities and the intermediates the golden stores, in one jitted call."""
    out = model(rgb=rgb, event=event)
    toks = [model.tokens("rgb", rgb), model.tokens("event", event)]
    ys = model.mamba(*toks)
    fused, _ = model.mcib(*ys)
    neck = hce_moe.gelu_exact(model.neck(fused.reshape(fused.shape[0], -1)))
    return {
        "logits": out["logits"],
        "router_probs": out["stats"]["router_probs"],
        "tokens_rgb": toks[0],
        "tokens_event": toks[1],
        "mamba_rgb": ys[0],
        "mamba_event": ys[1],
        "fused": fused,
        "neck": neck,
    }


@pytest.mark.slow  # four ResNet-18s converted and compiled: ~60 s on a busy 2-core CPU
def test_forward_matches_the_authors_code(golden, converted):
    model = load_pretrained("mco_e_net_reference", converted)
    model.eval()
    graphdef, state = nnx.split(model)
    got = jax.jit(lambda s, r, e: _stages(nnx.merge(graphdef, s), r, e), compiler_options=FAST_COMPILE)(
        state, golden["rgb"], golden["event"]
    )
    # stage by stage in forward order: a mismatch names the first stage that differs
    for name in ("tokens_rgb", "tokens_event", "mamba_rgb", "mamba_event", "fused", "neck", "router_probs"):
        np.testing.assert_allclose(np.asarray(got[name]), golden[name], atol=TOLERANCE, rtol=0, err_msg=name)
    np.testing.assert_allclose(np.asarray(got["logits"]), golden["logits"], atol=TOLERANCE, rtol=0)
    # the logits are not trivially equal (a zero model would also "match" zeros)
    assert np.abs(golden["logits"]).max() > 0.1


@pytest.mark.slow
def test_converter_fills_the_forward_dt_bias_and_the_aliased_A(state_dict, converted):
    model = load_pretrained("mco_e_net_reference", converted)
    for m in ("rgb", "event"):
        blk = model.mamba.blocks[m]
        fwd_bias = state_dict[f"{MAMBA}dt_proj_{m}.bias"]
        # their backward scan reads the forward bias; the stored dt_proj_b bias is never read
        np.testing.assert_array_equal(np.asarray(blk.dt_proj_b.bias[...]), fwd_bias)
        assert not np.allclose(state_dict[f"{MAMBA}dt_proj_b_{m}.bias"], fwd_bias)
    a_rgb = np.asarray(model.mamba.blocks["rgb"].A_log[...])
    np.testing.assert_array_equal(a_rgb, np.asarray(model.mamba.blocks["event"].A_log[...]))
    meta = read_meta(converted)
    assert meta["arch"] == "mco_e_net_reference" and meta["model"]["d_model"] == 4
    assert f"{MAMBA}dt_proj_b_rgb.bias" in meta["skipped"] and "output.weight" in meta["skipped"]
    assert not any(k.startswith("res00") for k in meta["skipped"][:-1] if "num_batches" not in k)


def test_one_half_of_an_aliased_pair_fills_both(state_dict):
    sd = {k: v for k, v in state_dict.items() if k != f"{MAMBA}A_log_event"}  # a deduplicating save
    model, _, _ = mco_convert.convert_state_dict(sd)
    np.testing.assert_array_equal(
        np.asarray(model.mamba.blocks["event"].A_log[...]), state_dict[f"{MAMBA}A_log_rgb"]
    )


def test_unread_keys_are_listed_and_skipped(state_dict):
    _, _, skipped = mco_convert.convert_state_dict(state_dict)
    unread = {k for k in skipped if "num_batches" not in k}
    assert unread == {
        "output.weight",
        "output.bias",
        f"{MAMBA}in_proj_extra.weight",
        f"{MAMBA}dt_proj_b_rgb.bias",
        f"{MAMBA}dt_proj_b_event.bias",
        *(
            f"{MAMBA}{n}.{leaf}"
            for n in ("norm_rgb", "norm_event", "fusion_gate.0", "fusion_gate.2")
            for leaf in ("weight", "bias")
        ),
    }


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("MCIB.proj_rgb.bias"), "missing keys: MCIB.proj_rgb.bias"),
        (
            lambda sd: sd.__setitem__("MCIB.extra.weight", np.zeros(3, np.float32)),
            "unexpected keys: MCIB.extra",
        ),
        (lambda sd: sd.__setitem__(f"{MAMBA}A_log_event", sd[f"{MAMBA}A_log_event"] + 1), "aliased"),
        (lambda sd: sd.pop(f"{MAMBA}in_proj_rgb.weight"), "not an MCO-E Net"),
        (lambda sd: sd.__setitem__("MCIB.proj_rgb.bias", np.zeros(5, np.float32)), "shape mismatches"),
    ],
)
def test_bad_state_dicts_are_one_line_errors(state_dict, edit, message):
    sd = dict(state_dict)
    edit(sd)
    with pytest.raises(ConversionError, match=message) as err:
        mco_convert.convert_state_dict(sd)
    assert "\n" not in str(err.value)


def test_cli_refuses_in_channels_for_the_whole_model(tmp_path, state_dict, capsys):
    weights = tmp_path / "w.safetensors"
    save_file({"MCIB.proj_rgb.bias": state_dict["MCIB.proj_rgb.bias"]}, str(weights))
    rc = convert_main(
        ["--arch", "mco_e_net_reference", "--weights", str(weights), "--out", str(tmp_path / "o")]
    )
    assert rc == 2 and "not an MCO-E Net" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("fast_compile")  # its eval step and evaluate's: the same -O0 program
def test_a_converted_model_becomes_a_run_that_evaluate_takes(
    golden, state_dict, converted, see_shards, tmp_path, capsys
):
    # python -m fer_jax.train --config configs/see_reference.py --config.model.weights=DIR
    #   --config.train.num_steps=0 --config.train.num_epochs=0: a zero-step run holding the converted model
    c = see_reference.get_config()
    c.data.dir = str(see_shards)
    c.data.image_size = 64  # the fixture's shards
    c.data.image_width = 0  # square (see_reference's default is the authors' 100 x 133)
    c.data.see_sampling = "stride4"  # the fixture keeps 8 frames, not every frame the authors' windows need
    c.model.update(
        name="mco_e_net_reference", backbone_classes=16, neck_dim=32, weights=str(converted),
        backbone_weights="none",
    )  # fmt: skip
    c.train.update(num_steps=0, num_epochs=0, batch_size=8)
    c.eval.update(batch_size=8, passes=1)
    summary = train(c, tmp_path / "run", progress=False)
    assert summary["step"] == 0 and summary["status"] == "finished"
    assert {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()} >= {"best", "latest"}
    # the run holds the authors' model: its restored eval model reproduces their logits
    run = Run.restore(tmp_path / "run", "best")
    try:
        logits = run.model()(rgb=golden["rgb"], event=golden["event"])["logits"]
    finally:
        run.close()
    np.testing.assert_allclose(np.asarray(logits), golden["logits"], atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(
        np.asarray(run.state["params"]["neck"]["kernel"]), state_dict["fusion_proj.0.weight"].T
    )
    # and evaluate scores it as the zero-step run's own evaluation did
    capsys.readouterr()
    rc = evaluate_main(["--workdir", str(tmp_path / "run"), "--passes", "1", "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["uar"] == pytest.approx(summary["last_eval"]["uar"], abs=1e-9)
