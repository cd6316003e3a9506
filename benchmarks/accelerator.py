"""One command that measures the backend it finds (GPU, TPU or CPU): train steps, MFU, memory, latency,
input pipeline and scan methods, as one Markdown table set (printed) and JSON (``--out``).

    python benchmarks/accelerator.py [--out docs/bench/accelerator.md] [--scale auto|paper|cpu|tiny]

Sections:
- **train**: the jitted train step (``benchmarks/train_step.bench_config``: the trainer's own state, loss
  and step on a fixed noise batch) of MambaFER (configs/dfew.py, ``model.backbone_weights=none``) at
  T = 16 frames and S = 112 and 128 px, and MCO-E Net (configs/see.py, paper size), each in float32 and
  bfloat16 (``model.dtype``) with rematerialisation off and on (``model.remat`` = none | blocks). Per row:
  compile s, step ms, clips/s, XLA cost-analysis FLOPs per step, model FLOPs utilisation (FLOPs / step
  time / the chip's peak: ``KNOWN_PEAKS`` below, else a measured matmul), the compiled program's bytes
  (arguments + outputs + temporaries - donated) and the device's peak bytes in use (``memory_stats``, GPU /
  TPU only; a process-wide peak, so it is the maximum over the rows so far: ``--models`` / ``--dtypes`` /
  ``--remat`` select one row for a clean figure). A config field that does not exist (yet) makes its rows
  ``n/a (field missing)`` instead of stopping the run.
- **latency**: MCO-E Net (configs/see.py) eval forward at batch 1 (``benchmarks/latency.measure``), ms per
  sample beside the paper's 2.3 ms (RTX 2080 Ti).
- **pipeline**: clips/s of the training input pipeline (``benchmarks/data.py``'s helpers, augmentation on)
  with 0 / 2 / 4 grain workers, beside what MambaFER's float32 step consumes at the same T and S.
- **scan**: ``selective_scan`` forward + backward per method of ``ssm_scan.ALL_METHODS`` (sequential, chunked,
  associative, state_passing; chunk 256) (``benchmarks/ssm_scan.bench_jax``).

Scales: ``paper`` (the default on GPU / TPU) uses the sizes above (MambaFER batch 32, MCO-E Net batch 64);
``cpu`` (the default on CPU, meant for a few minutes on 2 quiet cores) keeps the architectures' kinds but
shrinks frames, pixels, batch and widths (each row states its shape) and leaves the remat rows to
``--full-grid``; ``tiny`` is the smoke test's (the real models still compile for minutes on 2 cores).
Numbers depend on whatever else runs on the machine: quote them only from a quiet one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import data as data_bench  # noqa: E402
from benchmarks import latency as latency_bench  # noqa: E402
from benchmarks import ssm_scan, train_step  # noqa: E402
from fer_jax import cli  # noqa: E402

SECTIONS = ("train", "latency", "pipeline", "scan")
NEW_FIELDS = ("dtype", "param_dtype", "remat")  # issue 15's model fields; rows that need a missing one: n/a

# Dense bfloat16 peak TFLOP/s per JAX device, matched against device_kind (lower case, first match wins).
# Sources (vendor pages, dense = half the "with sparsity" figure): NVIDIA H200 / H100 datasheets
# (1,979 / 1,513 TFLOPS BF16 with sparsity for SXM / PCIe), A100 datasheet (312 BF16), L4 datasheet
# (242.5 with sparsity); V100 and T4 have no bfloat16 units: their FP16 tensor peaks (125 / 65 TFLOPS)
# bound what XLA can reach. Google Cloud TPU system architecture pages (cloud.google.com/tpu/docs/v2 ... v6e):
# v2 45 and v3 123 TFLOPS per chip of 2 cores, each core a JAX device; v4 275 and v5p 459 per chip
# (megacore: one device); v5e 197 and v6e 918 per single-core chip.
KNOWN_PEAKS: tuple[tuple[str, float], ...] = (
    (r"h200", 989.0),
    (r"h100.*pcie", 756.0),
    (r"h100", 989.0),
    (r"a100", 312.0),
    (r"v100", 125.0),
    (r"\bt4\b", 65.0),
    (r"\bl4\b", 121.0),
    (r"tpu v2", 22.5),
    (r"tpu v3", 61.5),
    (r"tpu v4", 275.0),
    (r"tpu v5 ?lite|tpu v5e", 197.0),
    (r"tpu v5p?$", 459.0),
    (r"tpu v6 ?lite|tpu v6e", 918.0),
)

# Per scale: MambaFER (frames, sizes, batch, model overrides), MCO-E Net (batch, size, overrides), latency
# iterations, pipeline (batch, batches, workers), scan (d, lengths), timed steps.
SCALES: dict[str, dict] = {
    "paper": dict(
        mamba=dict(frames=16, sizes=(112, 128), batch=32, model={}),
        mco=dict(batch=64, size=100, model={}),
        latency_iters=50,
        pipeline=dict(batch=32, batches=8, workers=(0, 2, 4)),
        scan=dict(d=256, lengths=(16, 256, 4096)),
        steps=10,
    ),
    # CPU: full EfficientNetV2-S / ResNet-18 kinds at reduced width (the eager init and compile of the
    # paper-size models alone take minutes on 2 cores); 96 px keeps the final maps at 3x3 (2x2 is XLA:CPU's
    # slow convolution path, docs/bench/train_step.md)
    "cpu": dict(
        mamba=dict(
            frames=4,
            sizes=(96,),
            batch=4,
            model=dict(backbone_width=0.25, backbone_depth=0.35, d_model=128, mhsa_heads=4, mlp_dims=(64,)),
        ),
        mco=dict(batch=8, size=100, model=dict(backbone_width=32, d_model=64)),
        latency_iters=10,
        pipeline=dict(batch=4, batches=4, workers=(0, 2)),
        scan=dict(d=64, lengths=(16, 256, 4096)),
        steps=3,
        # compiles dominate on 2 cores (each row compiles its own step) and remat made MambaFER's several
        # times longer, for memory a CPU does not lack: --full-grid adds those rows
        no_remat=True,
    ),
    "tiny": dict(
        mamba=dict(
            frames=2,
            sizes=(32,),
            batch=2,
            model=dict(backbone_width=0.1, backbone_depth=0.1, d_model=16, mhsa_heads=2, mlp_dims=(8,)),
        ),
        mco=dict(
            batch=2,
            size=32,
            model={
                "backbone_width": 8,
                "d_model": 16,
                "moe.num_experts": 3,
                "moe.deep_depth": 1,
                "moe.router_hidden": 16,
                "moe.focal_hidden": 16,
            },  # fmt: skip
        ),
        latency_iters=2,
        pipeline=dict(batch=2, batches=2, workers=(0,)),
        scan=dict(d=8, lengths=(16,)),
        steps=1,
    ),
}

TRAIN_COLUMNS = (
    "model",
    "config",
    "frames",
    "size",
    "batch",
    "dtype",
    "remat",
    "compile_s",
    "step_ms",
    "clips_s",
    "gflop_step",
    "tflops",
    "mfu",
    "compiled_mib",
    "peak_mib",
    "note",
)


def _parse(argv):
    p = cli.Parser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scale", choices=("auto", *SCALES), default="auto", help="auto: paper on GPU/TPU, cpu on CPU"
    )
    p.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    p.add_argument("--models", default="mambafer,mco_e_net", help="train rows: mambafer, mco_e_net or both")
    p.add_argument("--dtypes", default="float32,bfloat16", help="model.dtype values of the train rows")
    p.add_argument("--remat", default="none,blocks", help="model.remat values of the train rows")
    p.add_argument("--steps", type=int, default=0, help="timed train steps per row (0: the scale's)")
    p.add_argument(
        "--data-dir", default="", help="DFEW shards for the pipeline section (default: build a tiny set)"
    )
    p.add_argument(
        "--matmul", type=int, default=0, help="side of the measured-peak matmul (0: 2048 CPU, 8192 else)"
    )
    p.add_argument("--out", default="", help="write the Markdown here and the JSON beside it (.json)")
    p.add_argument("--full-grid", action="store_true", help="cpu scale: the remat rows too")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override of every train config"
    )
    a = p.parse_args(argv)
    a.sections = [s for s in a.sections.split(",") if s]
    for name, values, known in (
        ("--sections", a.sections, SECTIONS),
        ("--models", a.models.split(","), ("mambafer", "mco_e_net")),
        ("--dtypes", a.dtypes.split(","), ("float32", "bfloat16")),
    ):
        bad = [v for v in values if v not in known]
        if bad or not values:
            p.error(f"{name}: unknown {', '.join(bad) or 'empty list'}; known: {', '.join(known)}")
    a.models, a.dtypes, a.remat = (
        a.models.split(","),
        a.dtypes.split(","),
        [r for r in a.remat.split(",") if r],
    )
    if a.steps < 0 or a.matmul < 0:
        p.error("--steps and --matmul must be >= 0")
    for item in a.set:
        if "=" not in item:
            p.error(f"--set {item!r}: expected KEY=VALUE")
    if a.out:
        try:
            cli.check_output_file(a.out)
        except ValueError as e:
            p.error(str(e))
    return a


# ------------------------------------------------------------------------------------------- helpers


def _set(config, key: str, value) -> None:
    """``config[a][b]... = value`` for a dotted key (a new leaf is allowed: issue 15's fields may be absent)."""
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def _parse_value(text: str):
    """A --set value as Python: int, float, bool, tuple, else the string (configs type-check it later)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def peak_flops(device, matmul_side: int) -> tuple[float, str]:
    """The device's peak FLOP/s and where it comes from: KNOWN_PEAKS by device_kind, else a measured matmul
    (float32 on CPU, bfloat16 elsewhere) in this process."""
    kind = str(getattr(device, "device_kind", "")).lower()
    for pattern, tflops in KNOWN_PEAKS:
        if re.search(pattern, kind):
            return tflops * 1e12, f"bfloat16 dense peak of {device.device_kind} (table)"
    dtype = "float32" if device.platform == "cpu" else "bfloat16"
    n = matmul_side or (2048 if device.platform == "cpu" else 8192)
    return train_step.matmul_gflops(n, dtype=dtype) * 1e9, f"measured {n}^3 {dtype} matmul"


def _field_missing(exc: BaseException) -> str | None:
    """The issue-15 field a model refused as unknown (its typed config), else None."""
    m = re.search(r"unknown config key model\.(\w+)", str(exc))
    return m.group(1) if m and m.group(1) in NEW_FIELDS else None


def _failure_note(exc: BaseException) -> str:
    """A failed row's note: ``n/a (field missing: model.X)`` or ``error: <one line>``."""
    missing = _field_missing(exc)
    return (
        f"n/a (field missing: model.{missing})" if missing else f"error: {cli.one_line(exc, with_type=True)}"
    )


def _train_specs(scale: dict, a) -> list[dict]:
    specs = []
    for model in a.models:
        if model == "mambafer":
            s = scale["mamba"]
            shapes = [("dfew", s["frames"], size, s["batch"], s["model"]) for size in s["sizes"]]
        else:
            s = scale["mco"]
            shapes = [("see", 2, s["size"], s["batch"], s["model"])]
        for config, frames, size, batch, overrides in shapes:
            for dtype in a.dtypes:
                for remat in a.remat:
                    if scale.get("no_remat") and remat != "none" and not a.full_grid:
                        continue
                    specs.append(
                        dict(model=model, config=config, frames=frames, size=size, batch=batch,
                             dtype=dtype, remat=remat, overrides=overrides)
                    )  # fmt: skip
    return specs


def _train_config(spec: dict, sets: list[str]):
    config = train_step._load_config(spec["config"])
    config.model.backbone_weights = "none"  # random init: speed does not depend on the weights
    config.data.num_frames, config.data.image_size = spec["frames"], spec["size"]
    config.train.batch_size = spec["batch"]
    for key, value in spec["overrides"].items():
        _set(config.model, key, value)
    # float32 / no remat is the models' behaviour without the new fields: set them only when asked otherwise,
    # so those rows run before the fields exist; the others fail at build with "unknown config key"
    if spec["dtype"] != "float32" or "dtype" in config.model:
        config.model.dtype = spec["dtype"]
    if spec["remat"] != "none" or "remat" in config.model:
        config.model.remat = spec["remat"]
    for item in sets:
        key, _, value = item.partition("=")
        _set(config, key, _parse_value(value))
    return config


def run_train_row(spec: dict, sets: list[str], steps: int, peak: float) -> dict:
    row = {k: spec[k] for k in ("model", "config", "frames", "size", "batch", "dtype", "remat")}
    row.update({k: None for k in TRAIN_COLUMNS if k not in row})
    row["note"] = ""
    try:
        config = _train_config(spec, sets)
        with contextlib.redirect_stdout(sys.stderr):  # its progress line: stdout carries the table alone
            r = train_step.bench_config(
                f"{spec['model']} {spec['dtype']} remat={spec['remat']}", config, steps, None
            )
    except Exception as e:  # one row's failure (missing field, out of memory) must not lose the others
        row["note"] = _failure_note(e)
        return row
    flops_s = r["gflops"] * 1e9
    row.update(
        compile_s=r["compile_s"],
        step_ms=r["step_ms"],
        clips_s=r["clips_s"],
        gflop_step=r["gflop_step"],
        tflops=flops_s / 1e12,
        mfu=flops_s / peak,
        compiled_mib=None if r.get("compiled_bytes") is None else r["compiled_bytes"] / 2**20,
        peak_mib=None if r.get("peak_bytes") is None else r["peak_bytes"] / 2**20,
        temp_mib=None if r.get("temp_bytes") is None else r["temp_bytes"] / 2**20,  # JSON only
        params_m=r["params_M"],
    )
    return row


def run_latency(scale: dict, device, a) -> list[dict]:
    rows = []
    for dtype in a.dtypes:
        config = train_step._load_config("see")
        config.model.backbone_weights = "none"
        config.data.image_size = scale["mco"]["size"]
        for key, value in scale["mco"]["model"].items():
            _set(config.model, key, value)
        if dtype != "float32":
            config.model.dtype = dtype
        row = dict(model="mco_e_net", size=config.data.image_size, batch=1, dtype=dtype, ms=None,
                   gmacs=None, paper_ms=latency_bench.PAPER_MS, note="")  # fmt: skip
        iters = scale["latency_iters"]
        try:
            r = latency_bench.measure(config, device, 1, iters, warmup=max(1, iters // 5))
            row.update(ms=r["ms"], gmacs=r["gmacs"])
        except Exception as e:
            row["note"] = _failure_note(e)
        rows.append(row)
    return rows


def _tiny_dfew_shards(tmp: Path, frames: int, size: int) -> Path:
    """14 short synthetic DFEW clips built into shards at T = frames, S = size (data.py's build helper)."""
    from data_prep.synth import dfew

    raw = tmp / "raw"
    plan = dfew.plan_clips(14, seed=0)
    for item in plan:
        item["num_frames"] = min(item["num_frames"], max(frames + 2, 8))  # build cost scales with length
        dfew.write_clip(raw, item)
    dfew.write_splits(raw, plan)
    dfew.write_meta(raw, plan, {"kind": "dfew", "clips": len(plan), "seed": 0, "benchmark": True})
    out = tmp / "shards"
    data_bench._build(raw, out, types.SimpleNamespace(frames=frames, size=size), 1, "jpeg")
    return out


def run_pipeline(scale: dict, a, train_rows: list[dict]) -> list[dict]:
    from absl import flags

    from fer_jax.data.manifest import load_manifest

    flags.FLAGS.mark_as_parsed()  # grain workers read absl flags
    frames, size = scale["mamba"]["frames"], scale["mamba"]["sizes"][0]
    with tempfile.TemporaryDirectory(prefix="fer_jax_accel_") as tmp:
        if a.data_dir:
            d = Path(a.data_dir)
            pre = load_manifest(d).get("preprocessing", {})
            size = int(pre.get("size") or size)
            frames = min(frames, int(pre.get("frames") or frames))
        else:
            print(
                f"pipeline: building 14 synthetic DFEW clips at {frames} x {size} px",
                file=sys.stderr,
                flush=True,
            )
            d = _tiny_dfew_shards(Path(tmp), frames, size)
        p = scale["pipeline"]
        ns = types.SimpleNamespace(frames=frames, size=size, batch=p["batch"], batches=p["batches"])
        # what the step eats: MambaFER float32, no remat, at the same T and S when such a row ran
        step = next(
            (r for r in train_rows if r["model"] == "mambafer" and r["dtype"] == "float32" and r["remat"] == "none"
             and r["clips_s"] and (r["frames"], r["size"]) == (frames, size)),
            None,
        )  # fmt: skip
        rows = []
        for workers in p["workers"]:
            row = dict(workers=workers, frames=frames, size=size, batch=p["batch"], clips_s=None,
                       step_clips_s=step["clips_s"] if step else None, ratio=None, note="")  # fmt: skip
            try:
                row["clips_s"] = data_bench._pipeline_rate(d, ns, workers)
                if step:
                    row["ratio"] = row["clips_s"] / step["clips_s"]
            except Exception as e:
                row["note"] = _failure_note(e)
            rows.append(row)
    return rows


def run_scan(scale: dict) -> list[dict]:
    rows = []
    d = scale["scan"]["d"]
    for length in scale["scan"]["lengths"]:
        for method in ssm_scan.ALL_METHODS:
            row = dict(method=method, length=length, d=d, n=16, batch=2, fwd_ms=None, fwdbwd_ms=None, note="")
            try:
                r = ssm_scan.bench_jax(method, 2, length, d, 16, 256, repeats=3, max_gb=4.0)
                row["fwd_ms"] = None if r["fwd"] is None else 1e3 * r["fwd"]
                row["fwdbwd_ms"] = None if r["fwdbwd"] is None else 1e3 * r["fwdbwd"]
                if r["fwd"] is None or r["fwdbwd"] is None:
                    row["note"] = "skipped: over 4 GB of temporaries"
            except Exception as e:
                row["note"] = _failure_note(e)
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ rendering


def _f(value, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _mfu(r: dict) -> str:
    return "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"


# section key -> (title, columns: (header, alignment, cell of a row))
TABLES: dict[str, tuple[str, tuple[tuple[str, str, Callable[[dict], str]], ...]]] = {
    "train": ("Train step", (
        ("model", "---", lambda r: r["model"]), ("T x S", "---", lambda r: f"{r['frames']} x {r['size']}"),
        ("batch", "---:", lambda r: str(r["batch"])), ("dtype", "---", lambda r: r["dtype"]),
        ("remat", "---", lambda r: r["remat"]), ("compile (s)", "---:", lambda r: _f(r["compile_s"])),
        ("step (ms)", "---:", lambda r: _f(r["step_ms"])), ("clips/s", "---:", lambda r: _f(r["clips_s"])),
        ("GFLOP/step", "---:", lambda r: _f(r["gflop_step"], ".3g")),
        ("TFLOP/s", "---:", lambda r: _f(r["tflops"], ".3g")), ("MFU", "---:", _mfu),
        ("compiled (MiB)", "---:", lambda r: _f(r["compiled_mib"], ".0f")),
        ("device peak (MiB)", "---:", lambda r: _f(r["peak_mib"], ".0f")), ("note", "---", lambda r: r["note"]),
    )),
    "latency": ("MCO-E Net latency, batch 1 (eval forward)", (
        ("size", "---:", lambda r: str(r["size"])), ("dtype", "---", lambda r: r["dtype"]),
        ("GMACs / sample", "---:", lambda r: _f(r["gmacs"], ".3f")), ("ms / sample", "---:", lambda r: _f(r["ms"], ".2f")),
        ("paper ms", "---", lambda r: f"{r['paper_ms']} (RTX 2080 Ti)"), ("note", "---", lambda r: r["note"]),
    )),
    "pipeline": ("Input pipeline (DFEW, augmentation on) vs the step's consumption", (
        ("workers", "---:", lambda r: str(r["workers"])), ("T x S", "---", lambda r: f"{r['frames']} x {r['size']}"),
        ("batch", "---:", lambda r: str(r["batch"])), ("pipeline clips/s", "---:", lambda r: _f(r["clips_s"])),
        ("step clips/s", "---:", lambda r: _f(r["step_clips_s"])), ("ratio", "---:", lambda r: _f(r["ratio"], ".2f")),
        ("note", "---", lambda r: r["note"]),
    )),
    "scan": ("Selective scan (batch 2, n 16)", (
        ("method", "---", lambda r: r["method"]), ("length", "---:", lambda r: str(r["length"])),
        ("d", "---:", lambda r: str(r["d"])), ("fwd (ms)", "---:", lambda r: _f(r["fwd_ms"], ".2f")),
        ("fwd+bwd (ms)", "---:", lambda r: _f(r["fwdbwd_ms"], ".2f")), ("note", "---", lambda r: r["note"]),
    )),
}  # fmt: skip


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['device_count']} x {m['platform']} ({m['device_kind']}), {m['host']}, {m['cpus']} CPUs, "
        f"jax {m['jax']}; {m['date']}. Scale: {result['scale']}. Peak for MFU: "
        f"**{result['peak_tflops']:.4g} TFLOP/s** ({result['peak_source']}).",
    ]
    for key, (title, columns) in TABLES.items():
        if result.get(key):
            lines += ["", f"### {title}", "", "| " + " | ".join(c[0] for c in columns) + " |",
                      "|" + "|".join(c[1] for c in columns) + "|"]  # fmt: skip
            lines += ["| " + " | ".join(c[2](r) for c in columns) + " |" for r in result[key]]
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def main(argv=None) -> int:
    a = _parse(argv)
    import jax

    device = jax.devices()[0]
    scale_name = a.scale if a.scale != "auto" else ("cpu" if device.platform == "cpu" else "paper")
    scale = SCALES[scale_name]
    steps = a.steps or scale["steps"]
    print(
        f"backend {device.platform} ({device.device_kind}), scale {scale_name}", file=sys.stderr, flush=True
    )
    peak, source = peak_flops(device, a.matmul)
    result = {
        "machine": dict(
            platform=device.platform,
            device_kind=str(device.device_kind),
            device_count=jax.device_count(),
            host=platform.processor() or platform.machine(),
            cpus=os.cpu_count(),
            jax=jax.__version__,
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        ),
        "scale": scale_name,
        "peak_tflops": peak / 1e12,
        "peak_source": source,
        "steps": steps,
        "train": [],
        "latency": [],
        "pipeline": [],
        "scan": [],
        "notes": [],
    }
    if "train" in a.sections:
        specs = _train_specs(scale, a)
        for i, spec in enumerate(specs, 1):
            print(f"[{i}/{len(specs)}] train {spec['model']} {spec['frames']}x{spec['size']} b{spec['batch']} "
                  f"{spec['dtype']} remat={spec['remat']}", file=sys.stderr, flush=True)  # fmt: skip
            result["train"].append(run_train_row(spec, a.set, steps, peak))
            if result["train"][-1]["note"]:
                print(f"  {result['train'][-1]['note']}", file=sys.stderr, flush=True)
        if device.platform != "cpu":
            result["notes"].append(
                "device peak = the process's peak bytes in use after the row (a running maximum)"
            )
    if "latency" in a.sections:
        print("latency: MCO-E Net batch 1", file=sys.stderr, flush=True)
        result["latency"] = run_latency(scale, device, a)
    if "pipeline" in a.sections:
        result["pipeline"] = run_pipeline(scale, a, result["train"])
    if "scan" in a.sections:
        print("scan: selective_scan methods", file=sys.stderr, flush=True)
        result["scan"] = run_scan(scale)
    text = render_markdown(result)
    print(text)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        cli.write_atomic(out, text + "\n")
        cli.write_atomic(out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
        print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(cli.interrupted())
