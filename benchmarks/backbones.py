"""Backbone benchmark: GMACs per frame (XLA cost analysis) and CPU forward throughput vs torchvision.

    .venv/bin/python benchmarks/backbones.py                      # fer_jax ports only
    .venv/bin/python benchmarks/backbones.py --torch-python /tmp/tv/bin/python   # + torchvision, ratio

GMACs per frame, counted two ways: from the jaxpr of the forward (``count_macs``: convolutions and
matmuls, padding positions included - the thop/torchvision convention of the published figures in
REFERENCES.md, checked within 5%), and XLA's ``jax.jit(forward).lower(x).compile().cost_analysis()
["flops"] / 2``, which also counts elementwise ops but leaves out products with padding zeros, so it
reads 5-15% lower on the small maps of a 112 input. Throughput: images/s of the jitted eval-mode forward at batch
16 (fastest of ``--iters`` timed calls after warm-up). With ``--torch-python``, the same script runs in
that interpreter (``--torch-worker``: imports torch, never jax) to time torchvision's model in eval mode
under ``torch.inference_mode()`` with the same thread count, and the ratio port / torchvision is printed.
Prints a markdown table (``--markdown FILE`` also writes it) with the machine and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

# published GMACs per frame (REFERENCES.md)
PUBLISHED_GMACS = {
    ("resnet18", 224): 1.81,
    ("resnet18", 112): 0.485,
    ("efficientnet_v2_s", 224): 2.85,
    ("efficientnet_v2_s", 112): 0.76,
}
ARCH_CHOICES = ("resnet18", "resnet34", "efficientnet_v2_s")


def _time_calls(fn, iters: int, warmup: int) -> float:
    """Fastest of ``iters`` timed calls of ``fn()`` after ``warmup`` calls, in seconds.

    The minimum, not the median: on a shared machine the other processes only ever add time, so the
    fastest call is the least disturbed estimate of what the code costs.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def count_macs(jaxpr) -> int:
    """Multiply-accumulates of the convolutions and matmuls in a (closed) jaxpr, thop's convention.

    Per output element, a conv costs ``kh * kw * in / groups`` MACs, padding positions included (XLA's
    cost analysis leaves out the products with padding zeros, so it reads lower on small maps).
    """
    import math

    from jax.extend import core as jex_core

    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) // rhs[out_feature_dim]
        elif name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                if isinstance(sub, jex_core.ClosedJaxpr):
                    total += count_macs(sub.jaxpr)
                elif isinstance(sub, jex_core.Jaxpr):
                    total += count_macs(sub)
    return total


def measure_jax(arch: str, size: int, batch: int, iters: int, warmup: int) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from fer_jax.convert import ARCHS
    from fer_jax.models.layers import DepthwiseConv

    model = ARCHS[arch](rngs=nnx.Rngs(0))
    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    one = jnp.zeros((1, size, size, 3), jnp.float32)
    # DepthwiseConv computes its convolution as shifted multiplies; count it as the grouped conv it equals
    with mock.patch.object(DepthwiseConv, "__call__", nnx.Conv.__call__):
        macs = count_macs(jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, one).jaxpr)
    t0 = time.perf_counter()
    flops = forward.lower(state, one).compile().cost_analysis()["flops"]
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 3), jnp.float32)
    compiled = forward.lower(state, x).compile()
    compile_s = time.perf_counter() - t0
    seconds = _time_calls(lambda: compiled(state, x).block_until_ready(), iters, warmup)
    return {
        "gmacs": macs / 1e9,
        "xla_gmacs": flops / 2 / 1e9,
        "images_per_s": batch / seconds,
        "compile_s": compile_s,
    }


def _import_torchvision():
    """torchvision, also where its compiled operators cannot load (a CUDA torchvision wheel beside a CPU
    torch, as a package mirror without the CPU index serves them): the classification models never call
    those operators, so their fake-tensor registrations are skipped instead of failing the import."""
    import torch

    try:
        import torchvision
    except RuntimeError:
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        torch.library.register_fake = lambda *a, **k: lambda f: f
        import torchvision
    return torchvision


def measure_torch(arch: str, size: int, batch: int, iters: int, warmup: int, threads: int) -> dict:
    import torch

    torchvision = _import_torchvision()

    torch.set_num_threads(threads)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    x = torch.randn(batch, 3, size, size)

    def run():
        with torch.inference_mode():
            model(x)

    seconds = _time_calls(run, iters, warmup)
    return {
        "images_per_s": batch / seconds,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def _torch_via(python: str, arch: str, size: int, args, threads: int) -> dict:
    cmd = [
        python,
        __file__,
        "--torch-worker",
        "--archs",
        arch,
        "--sizes",
        str(size),
        "--batch",
        str(args.batch),
        "--iters",
        str(args.iters),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(threads),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"error: torch worker failed: {run.stderr.strip().splitlines()[-1:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", default=["resnet18", "efficientnet_v2_s"], choices=ARCH_CHOICES)
    p.add_argument("--sizes", nargs="+", type=int, default=[112, 224])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (XLA uses all cores)"
    )
    p.add_argument("--torch-python", default="", help="python with torch + torchvision, for the comparison")
    p.add_argument("--markdown", default="", help="also write the markdown table to this file")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.sizes) < 32 or args.batch < 1 or args.iters < 1:
        print("error: sizes must be >= 32, batch and iters >= 1", file=sys.stderr)
        return 2
    if args.torch_python and not Path(args.torch_python).exists():
        print(f"error: --torch-python {args.torch_python} does not exist", file=sys.stderr)
        return 2

    if args.torch_worker:  # runs in the torch interpreter: no jax import
        print(
            json.dumps(
                measure_torch(args.archs[0], args.sizes[0], args.batch, args.iters, args.warmup, args.threads)
            )
        )
        return 0

    import jax

    rows, versions = [], {}
    for arch in args.archs:
        for size in args.sizes:
            r = measure_jax(arch, size, args.batch, args.iters, args.warmup)
            ref = PUBLISHED_GMACS.get((arch, size))
            r.update(arch=arch, size=size, published=ref)
            r["gmacs_dev"] = None if ref is None else r["gmacs"] / ref - 1
            if args.torch_python:
                t = _torch_via(args.torch_python, arch, size, args, args.threads)
                r["torch_images_per_s"] = t["images_per_s"]
                versions = {"torch": t["torch"], "torchvision": t["torchvision"]}
            rows.append(r)
            print(json.dumps(r), file=sys.stderr)

    from fer_jax.host import cpu_description

    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Machine: {cpu_description()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}; "
        f"jax {jax.__version__}"
        + (f", torch {versions['torch']}, torchvision {versions['torchvision']}" if versions else "")
        + f"; {date}. Batch {args.batch}, eval mode, float32, fastest of {args.iters} calls; torch threads {args.threads}.",
        "",
        "| arch | input | GMACs/frame | published | deviation | XLA cost analysis | fer_jax img/s "
        "| torchvision img/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    bad = []
    for r in rows:
        dev = "" if r["gmacs_dev"] is None else f"{100 * r['gmacs_dev']:+.1f}%"
        if r["gmacs_dev"] is not None and abs(r["gmacs_dev"]) > 0.05:
            bad.append(f"{r['arch']}@{r['size']}")
        tv = r.get("torch_images_per_s")
        tv_cell = "" if tv is None else f"{tv:.1f}"
        ratio = "" if tv is None else f"{r['images_per_s'] / tv:.2f}"
        published = "" if r["published"] is None else str(r["published"])
        lines.append(
            f"| {r['arch']} | {r['size']} | {r['gmacs']:.3f} | {published} | {dev} | {r['xla_gmacs']:.3f} | "
            f"{r['images_per_s']:.1f} | {tv_cell} | {ratio} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if bad:
        print(
            f"error: GMACs differ from the published figures by more than 5%: {', '.join(bad)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
