"""MCO-E Net cost per sample: GMACs (XLA cost analysis / 2) and latency at batch 1 (jitted, warmed, median).

Usage::

    python benchmarks/latency.py                      # configs/see.py on the CPU
    python benchmarks/latency.py --device gpu         # same on the first GPU
    python benchmarks/latency.py --config configs/see_reference.py --ablation table2_A
    python benchmarks/latency.py --config configs/demo_see.py --train-step   # jitted train step time

Prints one markdown row per run next to the paper's figures (1.77 G, 2.3 ms on an RTX 2080 Ti, Table 4).
Weights are random (latency and MACs do not depend on them); the model runs in eval mode.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_GMACS, PAPER_MS = 1.77, 2.3


def _fail(msg: str) -> None:
    print(f"latency.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_config(path: str):
    if not os.path.isfile(path):
        _fail(f"config file not found: {path}")
    sys.path.insert(0, ROOT)
    spec = importlib.util.spec_from_file_location("_bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        _fail(f"{path} has no get_config()")
    return module.get_config()


def measure(config, device, batch: int, iters: int, warmup: int) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from fer_jax.models import registry

    with jax.default_device(device):
        model = registry.build(config, rngs=nnx.Rngs(0))
        model.eval()
        graphdef, state = nnx.split(model)
        inputs = {k: jax.device_put(v, device) for k, v in registry.dummy_inputs(config, batch).items()}
        state = jax.device_put(state, device)
        fwd = jax.jit(lambda s, x: nnx.merge(graphdef, s)(**x)["logits"])
        compiled = fwd.lower(state, inputs).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost.get("flops", float("nan")))
        for _ in range(warmup):
            compiled(state, inputs).block_until_ready()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            compiled(state, inputs).block_until_ready()
            times.append(time.perf_counter() - t0)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return {
        "gmacs": flops / 2 / batch / 1e9,
        "ms": statistics.median(times) * 1e3 / batch,
        "params_m": params / 1e6,
    }


def measure_train_step(config, iters: int, warmup: int) -> dict:
    """Median time of one jitted AdamW step (CE + aux_loss) at ``config.train.batch_size``, train mode."""
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from fer_jax.models import registry

    model = registry.build(config, rngs=nnx.Rngs(0))
    model.train()
    optimizer = nnx.Optimizer(
        model, optax.adamw(config.optim.lr, weight_decay=config.optim.weight_decay), wrt=nnx.Param
    )
    bs = config.train.batch_size
    rng = np.random.default_rng(0)
    inputs = {
        k: rng.normal(size=v.shape).astype(np.float32) for k, v in registry.dummy_inputs(config, bs).items()
    }
    labels = jnp.asarray(rng.integers(0, config.model.num_classes, bs))

    @nnx.jit(donate_argnums=(0, 1))
    def step(model, optimizer, inputs, labels):
        def loss_fn(m):
            out = m(**inputs)
            ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels).mean()
            return ce + out["aux_loss"]

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    t0 = time.perf_counter()
    step(model, optimizer, inputs, labels).block_until_ready()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        step(model, optimizer, inputs, labels).block_until_ready()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step(model, optimizer, inputs, labels).block_until_ready()
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "compile_s": compile_s, "batch": bs}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "see.py"))
    p.add_argument("--ablation", default="", help="a row of configs/see.py ABLATIONS, e.g. table2_A")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--train-step", action="store_true", help="time a jitted train step at train.batch_size")
    args = p.parse_args(argv)
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        _fail("--batch and --iters must be >= 1, --warmup >= 0")
    config = load_config(args.config)
    if args.ablation:
        from configs import see

        if args.ablation not in see.ABLATIONS:
            _fail(f"unknown ablation {args.ablation!r}; known: {', '.join(see.ABLATIONS)}")
        see.apply_ablation(config, args.ablation)
    import jax

    try:
        device = jax.devices(args.device)[0]
    except RuntimeError:
        _fail(f"no {args.device} device available to JAX")
    name = os.path.basename(args.config) + (f" {args.ablation}" if args.ablation else "")
    where = f"{device.device_kind} ({platform.machine()}, {os.cpu_count()} CPUs)"
    if args.train_step:
        with jax.default_device(device):
            t = measure_train_step(config, args.iters, args.warmup)
        print("| config | device | batch | image | train step (s, median) | first step incl. compile (s) |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {name} | {where} | {t['batch']} | {config.data.image_size} | {t['step_s']:.3f} "
            f"| {t['compile_s']:.1f} |"
        )
        return
    r = measure(config, device, args.batch, args.iters, args.warmup)
    print("| config | device | batch | params (M) | GMACs / sample | paper GMACs | ms / sample | paper ms |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {name} | {where} | {args.batch} | {r['params_m']:.2f} | {r['gmacs']:.3f} | {PAPER_GMACS} "
        f"| {r['ms']:.2f} | {PAPER_MS} (RTX 2080 Ti) |"
    )


if __name__ == "__main__":
    main()
