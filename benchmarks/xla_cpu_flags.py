"""XLA:CPU compiler flags, measured: port throughput and the demo configs' train step under each flag set.

    .venv/bin/python benchmarks/xla_cpu_flags.py [--sets default O1 onednn ...] [--what resnet18 demo_see]
        [--iters 10] [--steps 10] [--out docs/bench/xla_cpu_flags.md]

Issue #15 item 7 asks to close the ports' CPU gap to torchvision by measuring each XLA:CPU knob. XLA reads
``XLA_FLAGS`` once per process, so every flag set runs in a fresh subprocess of this script
(``--worker``), which measures, in one process:

- ``resnet18`` / ``efficientnet_v2_s``: images/s of the jitted eval-mode forward of the port at batch 16,
  112 px (``benchmarks/backbones.measure_jax``: fastest of ``--iters`` calls), and the largest difference
  of its logits on a fixed input from the default flags' (a flag that changes float results says so);
- ``demo_see`` / ``demo_see_rgb`` / ``demo_dfew``: compile seconds and the train step's milliseconds of that
  demo config (``benchmarks/train_step.bench_config``, ``--steps`` timed steps after a warm-up).

A flag set that fails to compile or crashes is reported with its error, not dropped. Time it on a quiet
machine (nothing else running: a busy machine only ever adds time); the table names the load at the start.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# name -> XLA_FLAGS added to the environment's (every flag listed by the installed jaxlib, jax 0.10.2)
FLAG_SETS = {
    "default": "",
    "O1": "--xla_backend_optimization_level=1",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_cc": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "xnn_graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "eigen_1thread": "--xla_cpu_multi_thread_eigen=false",
}
PORTS = ("resnet18", "efficientnet_v2_s")
DEMOS = ("demo_see", "demo_see_rgb", "demo_dfew")
SIZE, BATCH = 112, 16


def _port(arch: str, iters: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from backbones import measure_jax
    from flax import nnx

    from fer_jax.convert import ARCHS

    row = measure_jax(arch, SIZE, BATCH, iters, warmup=1)
    model = ARCHS[arch](rngs=nnx.Rngs(0))
    model.eval()
    x = jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3), jnp.float32)
    row["logits"] = np.asarray(jax.jit(lambda m, x: m(x))(model, x), np.float64).ravel().tolist()
    return row


def _demo(name: str, steps: int) -> dict:
    from train_step import _load_config, bench_config

    row = bench_config(name, _load_config(name), steps, None)
    return {"compile_s": row["compile_s"], "step_ms": row["step_ms"]}


def worker(what: list[str], iters: int, steps: int) -> dict:
    out = {}
    for item in what:
        try:
            out[item] = _port(item, iters) if item in PORTS else _demo(item, steps)
        except Exception as e:  # a flag set that breaks one measurement still reports the others
            out[item] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
    return out


def _run_set(flags: str, args) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    cmd = [sys.executable, __file__, "--worker", "--what", *args.what, "--iters", str(args.iters),
           "--steps", str(args.steps)]  # fmt: skip
    t = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if run.returncode != 0:
        tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1][:160]
        return {"error": f"exit {run.returncode}: {tail}", "wall_s": wall}
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def _cell(row: dict, item: str, base: dict) -> str:
    r = row.get(item, {})
    if "error" in row:
        return "failed"
    if "error" in r:
        return f"error: {r['error'][:40]}"
    if item in PORTS:
        ref = base.get(item, {}).get("logits")
        diff = max(abs(a - b) for a, b in zip(r["logits"], ref, strict=True)) if ref else float("nan")
        return f"{r['images_per_s']:.0f} img/s (diff {diff:.0e})"
    return f"{r['step_ms']:.0f} ms, compile {r['compile_s']:.0f} s"


def table(results: dict[str, dict], what: list[str]) -> str:
    base = results.get("default", {})
    lines = ["| flag set | XLA_FLAGS | " + " | ".join(what) + " |", "|---|---|" + "---|" * len(what)]
    for name, row in results.items():
        cells = [_cell(row, item, base) for item in what]
        lines.append(f"| {name} | `{FLAG_SETS[name] or '(none)'}` | " + " | ".join(cells) + " |")
    errors = [f"- {n}: {r['error']}" for n, r in results.items() if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", default=list(FLAG_SETS), choices=list(FLAG_SETS))
    p.add_argument("--what", nargs="+", default=["resnet18", "demo_see"], choices=PORTS + DEMOS)
    p.add_argument("--iters", type=int, default=10, help="timed forward calls per port (fastest counts)")
    p.add_argument("--steps", type=int, default=10, help="timed train steps per demo config")
    p.add_argument("--out", default="", help="also write the Markdown table (and .json beside it)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.what, args.iters, args.steps)))
        return 0
    sets = ["default"] + [s for s in args.sets if s != "default"]  # the reference for the logits diff
    load = os.getloadavg()[0]
    results = {}
    for name in sets:
        print(f"[{name}] XLA_FLAGS={FLAG_SETS[name] or '(none)'}", flush=True)
        results[name] = _run_set(FLAG_SETS[name], args)
        print(f"[{name}] {results[name].get('wall_s', 0):.0f} s", flush=True)
    text = (
        f"Printed by `python benchmarks/xla_cpu_flags.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" on {datetime.date.today()}; {os.cpu_count()} cores, load {load:.1f} at the start. Ports: eval-mode"
        f" forward, batch {BATCH}, {SIZE} px (diff: largest logit difference from the default flags);"
        " demo configs: one train step.\n\n" + table(results, args.what)
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
