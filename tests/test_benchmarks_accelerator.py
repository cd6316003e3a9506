"""benchmarks/accelerator.py in its tiniest mode: the table's columns, the JSON beside it, the peak table's
chip matching, rows that need a config field which does not exist, and one-line errors on bad flags."""

from __future__ import annotations

import json
import types

import pytest
import tiny_model  # noqa: E402  registers the tiny model (tests/tiny_model.py)

from benchmarks import accelerator

TRAIN_HEADER = (
    "| model | T x S | batch | dtype | remat | compile (s) | step (ms) | clips/s | GFLOP/step "
    "| TFLOP/s | MFU | compiled (MiB) | device peak (MiB) | note |"
)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tiny_configs(monkeypatch):
    """The paper configs' data sections with tests/tiny_model.py as the model: the whole command (rows,
    FLOPs, memory, rendering, JSON) in seconds; the real models' compiles take minutes on 2 cores."""
    load = accelerator.train_step._load_config

    def tiny(name):
        config = load(name)
        config.model.name = tiny_model.NAME  # its builder ignores the other model keys
        config.data.dataset = "dfew"  # the tiny model reads frames + landmarks
        return config

    monkeypatch.setattr(accelerator.train_step, "_load_config", tiny)


def test_tiny_run_writes_the_table_and_the_json(tmp_path, capsys, monkeypatch):
    _tiny_configs(monkeypatch)
    out = tmp_path / "acc.md"
    rc = accelerator.main(
        ["--scale", "tiny", "--sections", "train,latency", "--models", "mco_e_net", "--dtypes", "float32",
         "--remat", "none", "--matmul", "64", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    text = out.read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    lines = text.splitlines()
    head = lines.index(TRAIN_HEADER)
    row = _cells(lines[head + 2])
    assert len(row) == len(_cells(TRAIN_HEADER))
    assert row[:5] == ["mco_e_net", "2 x 32", "2", "float32", "none"]
    assert row[-1] == ""  # the row ran: no n/a, no error
    assert all(float(row[i]) > 0 for i in (6, 7, 8, 9))  # step ms, clips/s, GFLOP/step, TFLOP/s
    assert row[10].endswith("%")

    data = json.loads(out.with_suffix(".json").read_text())
    assert data["scale"] == "tiny" and data["machine"]["platform"] == "cpu"
    assert data["peak_source"] == "measured 64^3 float32 matmul" and data["peak_tflops"] > 0
    (r,) = data["train"]
    assert set(accelerator.TRAIN_COLUMNS) <= set(r)
    # the row's numbers agree with each other and with the table
    assert r["clips_s"] == pytest.approx(r["batch"] / (r["step_ms"] / 1e3), rel=1e-6)
    assert r["mfu"] == pytest.approx(r["tflops"] / data["peak_tflops"], rel=1e-6)
    assert r["tflops"] == pytest.approx(r["gflop_step"] / r["step_ms"], rel=1e-6)
    assert f"{r['step_ms']:.1f}" == row[6]
    assert r["compiled_mib"] > 0 and r["peak_mib"] is None  # CPU: compiled analysis only
    (lat,) = data["latency"]
    assert lat["batch"] == 1 and lat["ms"] > 0 and lat["paper_ms"] == 2.3
    assert "### MCO-E Net latency, batch 1 (eval forward)" in text


def test_known_chips_use_the_table_and_unknown_ones_a_measured_matmul():
    def dev(kind, platform="gpu"):
        return types.SimpleNamespace(device_kind=kind, platform=platform)

    for kind, tflops in [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
                         ("NVIDIA A100-SXM4-40GB", 312.0), ("Tesla T4", 65.0), ("NVIDIA L4", 121.0),
                         ("TPU v3", 61.5), ("TPU v4", 275.0), ("TPU v5 lite", 197.0), ("TPU v5p", 459.0),
                         ("TPU v6 lite", 918.0)]:  # fmt: skip
        peak, source = accelerator.peak_flops(dev(kind), 0)
        assert peak == tflops * 1e12, kind
        assert "table" in source
    # an L40S must not read as an L4; a CPU is measured in float32
    peak, source = accelerator.peak_flops(dev("cpu", "cpu"), 32)
    assert source == "measured 32^3 float32 matmul" and peak > 0
    assert accelerator.peak_flops(dev("NVIDIA L40S", "cpu"), 32)[1].startswith("measured")


def test_a_row_needing_a_missing_field_reads_na(monkeypatch):
    def refuse(name, config, steps, batch_size):
        raise ValueError("unknown config key model.remat; known: backbone_width, d_model")

    monkeypatch.setattr(accelerator.train_step, "bench_config", refuse)
    spec = accelerator._train_specs(accelerator.SCALES["tiny"], types.SimpleNamespace(
        models=["mambafer"], dtypes=["bfloat16"], remat=["blocks"]))[0]  # fmt: skip
    row = accelerator.run_train_row(spec, [], 1, 1e12)
    assert row["note"] == "n/a (field missing: model.remat)" and row["step_ms"] is None
    config = accelerator._train_config(spec, ["train.batch_size=3"])
    assert (config.model.dtype, config.model.remat, config.train.batch_size) == ("bfloat16", "blocks", 3)
    assert config.model.backbone_weights == "none"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sections", "train,gpu"], "--sections: unknown gpu"),
        (["--dtypes", "float16"], "--dtypes: unknown float16"),
        (["--steps", "-1"], "--steps and --matmul must be >= 0"),
        (["--set", "model.dtype"], "expected KEY=VALUE"),
    ],
)
def test_bad_flags_fail_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        accelerator.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # 47 s on the 2 shared cores (a synthetic shard build, grain, 8 scan compiles)
def test_pipeline_is_set_beside_the_steps_consumption_and_scan_rows_run(tmp_path, capsys, monkeypatch):
    _tiny_configs(monkeypatch)
    out = tmp_path / "acc.md"
    argv = ["--scale", "tiny", "--sections", "train,pipeline,scan", "--models", "mambafer", "--dtypes", "float32",
            "--remat", "none", "--matmul", "64", "--out", str(out)]  # fmt: skip
    assert accelerator.main(argv) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    (step,) = data["train"]
    (pipe,) = data["pipeline"]  # tiny scale: 0 workers only
    assert (pipe["frames"], pipe["size"]) == (step["frames"], step["size"]) == (2, 32)
    assert pipe["clips_s"] > 0 and pipe["step_clips_s"] == step["clips_s"]
    assert pipe["ratio"] == pytest.approx(pipe["clips_s"] / step["clips_s"])
    assert [(r["method"], r["length"]) for r in data["scan"]] == [
        (m, 16) for m in ("sequential", "chunked", "associative", "state_passing")
    ]
    assert all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 and not r["note"] for r in data["scan"])
    text = out.read_text()
    assert "| workers | T x S | batch | pipeline clips/s | step clips/s | ratio | note |" in text
    assert "| method | length | d | fwd (ms) | fwd+bwd (ms) | note |" in text


def test_grids_paper_has_every_combination_cpu_leaves_remat_to_full_grid():
    paper = accelerator._train_specs(accelerator.SCALES["paper"], accelerator._parse([]))
    assert (
        len(paper) == 12
    )  # MambaFER at 112 and 128 px, MCO-E Net: x float32 / bfloat16 x remat none / blocks
    assert {(s["frames"], s["size"], s["batch"]) for s in paper if s["model"] == "mambafer"} == {
        (16, 112, 32),
        (16, 128, 32),
    }
    assert {(s["config"], s["size"], s["batch"]) for s in paper if s["model"] == "mco_e_net"} == {
        ("see", 100, 64)
    }
    cpu = accelerator._train_specs(accelerator.SCALES["cpu"], accelerator._parse([]))
    assert [(s["dtype"], s["remat"]) for s in cpu] == [("float32", "none"), ("bfloat16", "none")] * 2
    assert len(accelerator._train_specs(accelerator.SCALES["cpu"], accelerator._parse(["--full-grid"]))) == 8
