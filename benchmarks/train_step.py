"""Throughput of the jitted train step per model config, against the machine's matmul GFLOP/s.

    python benchmarks/train_step.py [--configs demo_see demo_dfew ...] [--steps 5] [--batch-size N]
                                    [--out docs/bench/train_step.md]

For each config (skipped with a note when its file or model does not exist yet) it builds the model and
train state exactly as ``fer_jax.training.loop.train`` does, compiles the ONE train step (reported:
compile seconds), runs ``--steps`` timed steps on a fixed dummy batch (``registry.dummy_inputs`` filled
with noise) and reports steps/s, clips/s, the step's FLOPs from XLA's cost analysis (forward + backward +
optimizer), the achieved GFLOP/s, and that as a fraction of a large float32 ``jnp.dot`` (2048^3 by
default) measured in the same run. Data loading is not included (the pipeline has its own benchmark).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_CONFIGS = ["demo_dfew", "demo_see", "demo_see_rgb", "dfew", "see"]


def _load_config(name: str):
    path = ROOT / "configs" / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def matmul_gflops(n: int, repeats: int = 5, dtype: str = "float32") -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def bench_config(name: str, config, steps: int, batch_size: int | None) -> dict:
    import jax
    import numpy as np

    from fer_jax.losses import loss_from_config
    from fer_jax.models import registry
    from fer_jax.training import evaluation
    from fer_jax.training import mesh as mesh_lib
    from fer_jax.training import run as run_lib
    from fer_jax.training import steps as steps_lib

    if batch_size:
        config.train.batch_size = batch_size
    bs = int(config.train.batch_size)
    mesh = mesh_lib.make_mesh()
    defs, state, tx, schedule = run_lib.build_model_and_state(
        config, mesh, total_updates=1000, updates_per_epoch=100
    )
    input_names = list(registry.input_spec(config))
    counts = [10] * int(config.model.num_classes)
    step_fn = steps_lib.jit_train_step(
        steps_lib.make_train_step(
            defs,
            tx,
            schedule,
            loss_from_config(config, counts),
            input_names,
            ema_decay=float(config.train.ema_decay),
        ),
        mesh,
    )
    rng = np.random.default_rng(0)
    batch = {
        k: rng.normal(size=v.shape).astype(v.dtype) for k, v in registry.dummy_inputs(config, bs).items()
    }
    batch["label"] = rng.integers(0, config.model.num_classes, bs).astype(np.int32)
    dev_batch = evaluation.device_batch(batch, input_names, mesh)

    t = time.perf_counter()
    lowered = step_fn.lower(state, dev_batch)
    lower_s = time.perf_counter() - t
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    print(f"{name}: trace + lower {lower_s:.1f} s, XLA compile {compile_s - lower_s:.1f} s", flush=True)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float((cost or {}).get("flops", float("nan")))
    mem = compiled.memory_analysis()  # None where the backend does not report it

    state, m = compiled(state, dev_batch)  # warm-up
    jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, dev_batch)
    jax.block_until_ready((state, m))
    dt = (time.perf_counter() - t) / steps
    stats = jax.local_devices()[0].memory_stats() or {}  # {} on CPU
    return {
        "config": name,
        "model": config.model.name,
        "batch": bs,
        "params_M": sum(x.size for x in jax.tree.leaves(state["params"])) / 1e6,
        "compile_s": compile_s,
        "step_ms": 1e3 * dt,
        "steps_s": 1 / dt,
        "clips_s": bs / dt,
        "gflop_step": flops / 1e9,
        "gflops": flops / dt / 1e9,
        # compiled program: arguments + outputs + temporaries - donated aliases (benchmarks/accelerator.py)
        "compiled_bytes": None
        if mem is None
        else int(
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        ),
        "temp_bytes": None if mem is None else int(mem.temp_size_in_bytes),
        "peak_bytes": stats.get("peak_bytes_in_use"),  # the process's peak so far, not this step's alone
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="config names under configs/")
    p.add_argument("--steps", type=int, default=5, help="timed steps per config (after one warm-up)")
    p.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    p.add_argument("--matmul", type=int, default=2048, help="side of the reference float32 matmul")
    p.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. data.image_size=80",
    )
    a = p.parse_args(argv)
    if a.steps < 1:
        p.exit(2, "error: --steps must be >= 1\n")
    from fer_jax import cpu_threads

    cpu_threads.apply_from_env()  # FER_JAX_CPU_THREADS, as the CLIs honour it (benchmarks/cpu_threads.py)
    import jax

    peak = matmul_gflops(a.matmul)
    rows, notes = [], []
    for name in a.configs:
        config = _load_config(name)
        if config is None:
            notes.append(f"{name}: configs/{name}.py does not exist yet")
            continue
        for item in a.set:
            key, _, value = item.partition("=")
            section, _, field = key.rpartition(".")
            target = config
            for part in filter(None, section.split(".")):
                target = target[part]
            target[field] = type(target[field])(value)
        label = name + "".join(f" {item}" for item in a.set)
        try:
            rows.append(bench_config(label, config, a.steps, a.batch_size))
        except Exception as e:  # a model still being written: note it, measure the others
            notes.append(f"{name}: skipped ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        print(rows[-1] if rows and rows[-1]["config"] == label else notes[-1], file=sys.stderr, flush=True)

    from fer_jax.host import cpu_description

    dev = jax.devices()[0]
    lines = [
        f"Machine: {cpu_description()}, {os.cpu_count()} cores; {jax.device_count()} x {dev.platform} "
        f"({getattr(dev, 'device_kind', '')}), jax {jax.__version__}; reference {a.matmul}^3 float32 matmul: "
        f"**{peak:.1f} GFLOP/s**.",
        "",
        "| config | model | batch | params (M) | compile (s) | step (ms) | steps/s | clips/s | GFLOP/step | GFLOP/s | of matmul |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['model']} | {r['batch']} | {r['params_M']:.2f} | {r['compile_s']:.1f} | "
            f"{r['step_ms']:.1f} | {r['steps_s']:.2f} | {r['clips_s']:.1f} | {r['gflop_step']:.2f} | "
            f"{r['gflops']:.1f} | {100 * r['gflops'] / peak:.0f}% |"
        )
    lines += [f"- {n}" for n in notes]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
