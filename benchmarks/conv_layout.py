"""Does the convolution layout change XLA:CPU's speed? ResNet-18's convolutions in NHWC (flax) and NCHW (torch).

    python benchmarks/conv_layout.py [--batch 16] [--size 112] [--iters 10] [--out docs/bench/conv_layout.md]

flax's ``nnx.Conv`` is NHWC only; torchvision runs NCHW (oneDNN picks its own blocked layout inside). This
times every distinct convolution of ResNet-18 (eval forward, float32, the shapes of a ``--size`` input)
as one jitted ``lax.conv_general_dilated`` with NHWC / HWIO and with NCHW / OIHW dimension numbers, and
sums each layout's time weighted by how often ResNet-18 runs that shape. Both results are checked equal
(after the transpose). A large gap in favour of NCHW would make a layout switch worth building; a small
one says the ports' gap to torchvision lies elsewhere (the kernels themselves).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report_text import emit, printed_by  # noqa: E402


def resnet18_convs(size: int) -> list[tuple[str, int, int, int, int, int, int]]:
    """(name, count, in_ch, out_ch, kernel, stride, input side) of ResNet-18's convolutions."""
    s = (size + 3) // 4  # after the stem's stride-2 conv and stride-2 max pool
    rows = [("stem 7x7/2", 1, 3, 64, 7, 2, size)]
    ch = 64
    for stage, out in enumerate((64, 128, 256, 512)):
        stride = 1 if stage == 0 else 2
        if stride == 2:
            rows.append((f"layer{stage + 1} 3x3/2", 1, ch, out, 3, 2, s))
            rows.append((f"layer{stage + 1} 1x1/2 down", 1, ch, out, 1, 2, s))
            s = (s + 1) // 2  # a padded stride-2 convolution rounds up (7 -> 4)
            rows.append((f"layer{stage + 1} 3x3", 3, out, out, 3, 1, s))
        else:
            rows.append((f"layer{stage + 1} 3x3", 4, ch, out, 3, 1, s))
        ch = out
    return rows


# run by --torch-python's interpreter: the same convolutions through torch (NCHW, oneDNN), best of ITERS
TORCH_WORKER = """
import json, sys, time, torch
shapes, batch, iters = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]))
out = []
with torch.inference_mode():
    for cin, cout, k, s, side in shapes:
        x, w = torch.randn(batch, cin, side, side), torch.randn(cout, cin, k, k)
        f = lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=k // 2)
        f()
        best = float("inf")
        for _ in range(iters):
            t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
        out.append(best)
print(json.dumps({"times": out, "torch": torch.__version__}))
"""


def torch_times(python: str, rows: list, batch: int, iters: int) -> tuple[list[float], str]:
    """Best-of-``iters`` seconds of each row's convolution in torch, run by ``python``; its torch version."""
    import json
    import subprocess

    shapes = json.dumps([[cin, cout, k, s, side] for _, _, cin, cout, k, s, side in rows])
    threads = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    run = subprocess.run(
        [python, "-c", TORCH_WORKER, shapes, str(batch), str(iters), threads], capture_output=True, text=True
    )
    if run.returncode != 0:
        raise SystemExit(f"error: the torch worker failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return result["times"], result["torch"]


def time_fn(fn, *args, iters: int) -> float:
    fn(*args).block_until_ready()
    best = float("inf")
    for _ in range(iters):
        t = time.perf_counter()
        fn(*args).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/conv_layout.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=112, help="input side in pixels (ResNet-18's shapes follow)")
    p.add_argument("--iters", type=int, default=10, help="timed calls per convolution (the best is kept)")
    p.add_argument("--out", default=None, help="also write the Markdown table here")
    p.add_argument(
        "--torch-python", default="", help="a python with torch: adds torch's time of each convolution"
    )
    a = p.parse_args(argv)
    if a.torch_python and not Path(a.torch_python).exists():
        p.error(f"--torch-python {a.torch_python} does not exist")
    import jax
    import numpy as np
    from jax import lax

    rng = np.random.default_rng(0)
    head = (
        f"{printed_by('conv_layout.py', argv)} at the start; jax {jax.__version__} on {jax.default_backend()}"
    )
    rows, xla = resnet18_convs(a.size), []
    for name, _, cin, cout, k, stride, side in rows:
        x = rng.standard_normal((a.batch, side, side, cin), dtype=np.float32)
        w = rng.standard_normal((k, k, cin, cout), dtype=np.float32) / np.sqrt(k * k * cin)
        pad = [(k // 2, k // 2)] * 2

        def conv(dims, s=stride, pad=pad):
            return jax.jit(
                lambda xs, ws: lax.conv_general_dilated(xs, ws, (s, s), pad, dimension_numbers=dims)
            )

        nhwc, nchw = conv(("NHWC", "HWIO", "NHWC")), conv(("NCHW", "OIHW", "NCHW"))
        xc, wc = np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.ascontiguousarray(w.transpose(3, 2, 0, 1))
        diff = float(np.abs(np.asarray(nhwc(x, w)) - np.asarray(nchw(xc, wc)).transpose(0, 2, 3, 1)).max())
        if diff > 1e-3:
            raise SystemExit(f"error: {name}: the layouts disagree by {diff:.2e}")
        xla.append((time_fn(nhwc, x, w, iters=a.iters), time_fn(nchw, xc, wc, iters=a.iters)))
    torch, version = torch_times(a.torch_python, rows, a.batch, a.iters) if a.torch_python else ([], "")
    extra = f"; torch {version} in the same run (NCHW, inference mode, a thread per core)" if torch else ""
    lines = [
        f"{head}{extra}. Best of {a.iters} calls, batch {a.batch}, float32, {a.size} px input.",
        "",
        "| convolution | count | XLA NHWC ms | XLA NCHW ms | NCHW / NHWC |"
        + (" torch ms | XLA NHWC / torch |" if torch else ""),
        "|---|---:|---:|---:|---:|" + ("---:|---:|" if torch else ""),
    ]
    total = [0.0, 0.0, 0.0]
    for i, (name, count, cin, cout, _, _, side) in enumerate(rows):
        t1, t2 = xla[i]
        total[0], total[1] = total[0] + count * t1, total[1] + count * t2
        cells = f"| {name} ({cin}->{cout} at {side} px) | {count} | {1e3 * t1:.2f} | {1e3 * t2:.2f} | {t2 / t1:.2f} |"
        if torch:
            total[2] += count * torch[i]
            cells += f" {1e3 * torch[i]:.2f} | {t1 / torch[i]:.2f} |"
        lines.append(cells)
    n, c, tt = (1e3 * v for v in total)
    last = f"| **ResNet-18's convolutions, weighted** | | **{n:.1f}** | **{c:.1f}** | **{c / n:.2f}** |"
    lines.append(last + (f" **{tt:.1f}** | **{n / tt:.2f}** |" if torch else ""))
    emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
