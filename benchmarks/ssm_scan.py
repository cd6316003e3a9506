"""Selective-scan benchmark: time and memory of each ``fer_jax.models.ssm.selective_scan`` method.

For each method and length: forward and forward+backward wall time (jitted, warmed up, median of
``--repeats`` runs) and the peak temporary memory XLA's compiled memory analysis reports, plus the time
per token. Defaults follow issue 2: lengths 16, 256, 4096, 65536 with d = 256, n = 16, batch 2.
A configuration whose compiled temp memory exceeds ``--max-gb`` is reported and not run.

Optional comparison with the parallel scan (``pscan``) of alxndrTL/mamba.py on PyTorch CPU, timed on the
same shapes and thread count (the selective_scan of its mamba.py: exp(delta A), delta B u, pscan, <h, C>,
+ D u; softplus included on both sides)::

    python benchmarks/ssm_scan.py --torch-pscan /tmp/mambapy/mambapy --torch-python /tmp/tv/bin/python

The torch side runs in a subprocess of ``--torch-python`` (an interpreter with torch), so this project's
environment does not need torch. Run ``python benchmarks/ssm_scan.py --help`` for all flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ALL_METHODS = ("sequential", "chunked", "associative", "state_passing")


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (compile / allocator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inputs_np(batch: int, length: int, d: int, n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    f32 = np.float32
    return dict(
        u=rng.standard_normal((batch, length, d), dtype=f32),
        delta=rng.standard_normal((batch, length, d), dtype=f32) - 2.0,
        A=-np.exp(rng.standard_normal((d, n), dtype=f32)),
        B=rng.standard_normal((batch, length, n), dtype=f32),
        C=rng.standard_normal((batch, length, n), dtype=f32),
        D=rng.standard_normal((d,), dtype=f32),
    )


def bench_jax(method: str, batch: int, length: int, d: int, n: int, chunk: int, repeats: int, max_gb: float):
    """Returns a dict with fwd/fwdbwd seconds (None when skipped) and temp bytes of both programs."""
    import jax
    import jax.numpy as jnp

    from fer_jax.models import ssm

    inp = {k: jnp.asarray(v) for k, v in _inputs_np(batch, length, d, n).items()}
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"])

    def fwd(u, delta, A, B, C, D):
        return ssm.selective_scan(u, delta, A, B, C, D, delta_softplus=True, method=method, chunk_size=chunk)

    def loss(*a):
        return jnp.sum(fwd(*a))

    grad = jax.grad(loss, argnums=tuple(range(6)))
    out = {}
    for name, f in (("fwd", fwd), ("fwdbwd", grad)):
        compiled = jax.jit(f).lower(*args).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes
        out[name + "_temp"] = temp
        if temp > max_gb * 2**30:
            out[name] = None
            continue
        out[name] = _median_time(lambda c=compiled: jax.block_until_ready(c(*args)), repeats)
    return out


# ------------------------------------------------------------------------------------------ torch side


def _torch_worker(spec: dict) -> dict:
    """Runs inside --torch-python: times mamba.py's pscan selective scan. Prints one JSON line."""
    import numpy as np
    import torch

    sys.path.insert(0, spec["path"])
    from pscan import pscan  # alxndrTL/mamba.py, mambapy/pscan.py

    torch.set_num_threads(spec["threads"])
    batch, length, d, n = spec["batch"], spec["length"], spec["d"], spec["n"]
    # forward holds about 5 (b, l, d, n) float32 tensors (deltaA, BX, their clones, hs), backward ~10
    big = batch * length * d * n * 4
    inp = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _inputs_np(batch, length, d, n).items()}

    def scan(u, delta, A, B, C, D):
        delta = torch.nn.functional.softplus(delta)
        deltaA = torch.exp(delta.unsqueeze(-1) * A)
        BX = delta.unsqueeze(-1) * B.unsqueeze(2) * u.unsqueeze(-1)
        hs = pscan(deltaA, BX)
        y = (hs @ C.unsqueeze(-1)).squeeze(3)
        return y + D * u

    args = [inp[k] for k in ("u", "delta", "A", "B", "C", "D")]
    out = {"fwd_est": 5 * big, "fwdbwd_est": 10 * big}

    def run_fwd():
        with torch.no_grad():
            scan(*args)

    grad_args = [a.clone().requires_grad_(True) for a in args]

    def run_fwdbwd():
        for a in grad_args:
            a.grad = None
        scan(*grad_args).sum().backward()

    for name, fn in (("fwd", run_fwd), ("fwdbwd", run_fwdbwd)):
        if out[name + "_est"] > spec["max_gb"] * 2**30:
            out[name] = None
        else:
            out[name] = _median_time(fn, spec["repeats"])
    return out


def bench_torch(python: str, path: str, threads: int, **spec) -> dict:
    spec = dict(spec, path=path, threads=threads)
    proc = subprocess.run(
        [python, os.path.abspath(__file__), "--_torch-worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"torch worker failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- output


def _fmt_ms(seconds):
    return "skipped" if seconds is None else f"{seconds * 1e3:.2f}"


def _fmt_us_tok(seconds, tokens):
    return "-" if seconds is None else f"{seconds / tokens * 1e6:.3f}"


def _fmt_ratio(seconds, ref_seconds):
    return "-" if seconds is None or ref_seconds is None else f"{seconds / ref_seconds:.2f}x"


def _fmt_mb(nbytes):
    return f"{nbytes / 2**20:.1f}"


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _methods(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ALL_METHODS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"unknown method(s) {bad}; choose from {', '.join(ALL_METHODS)}")
    return values


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(
        description="Time and memory of the selective-scan methods (and optionally mamba.py's pscan).",
    )
    p.add_argument("--lengths", type=_positive_ints, default=[16, 256, 4096, 65536], help="comma-separated")
    p.add_argument("--methods", type=_methods, default=list(ALL_METHODS), help="comma-separated")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median reported)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--d", type=int, default=256, help="channels (d_inner)")
    p.add_argument("--n", type=int, default=16, help="state size")
    p.add_argument("--chunk-size", type=int, default=256, help="chunk for the chunked method")
    p.add_argument("--max-gb", type=float, default=4.0, help="skip a cell whose temp memory exceeds this")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--torch-pscan", metavar="PATH", help="folder holding alxndrTL/mamba.py's pscan.py")
    p.add_argument("--torch-python", default=sys.executable, help="interpreter with torch installed")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (XLA uses all cores)")
    p.add_argument("--_torch-worker", dest="torch_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_worker is None:
        for name in ("repeats", "batch", "d", "n", "chunk_size", "threads"):
            if getattr(args, name) < 1:
                p.error(f"--{name.replace('_', '-')} must be >= 1")
        if args.torch_pscan and not os.path.isfile(os.path.join(args.torch_pscan, "pscan.py")):
            p.error(f"--torch-pscan: no pscan.py in {args.torch_pscan}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.torch_worker is not None:
        print(json.dumps(_torch_worker(json.loads(args.torch_worker))))
        return 0

    import jax

    print(
        f"selective_scan benchmark: batch={args.batch} d={args.d} n={args.n} chunk={args.chunk_size} "
        f"repeats={args.repeats} backend={jax.default_backend()} devices={jax.device_count()} "
        f"cpu_count={os.cpu_count()} max_gb={args.max_gb} "
        # timings on a shared machine mean little without the load they were taken under
        f"load={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    header = "| method | length | fwd ms | fwd us/token | fwd+bwd ms | fwd+bwd us/token | fwd temp MB | fwd+bwd temp MB |"
    if args.torch_pscan:
        header += " fwd / pscan | fwd+bwd / pscan |"
    print(header)
    print("|" + "---|" * header.count(" |"))
    for length in args.lengths:
        tokens = args.batch * length
        ref = None
        if args.torch_pscan:
            # torch first, so that each JAX row can print its ratio to pscan's time (the target)
            ref = bench_torch(
                args.torch_python,
                args.torch_pscan,
                args.threads,
                batch=args.batch,
                length=length,
                d=args.d,
                n=args.n,
                repeats=args.repeats,
                max_gb=args.max_gb,
            )
            if args.no_backward:
                ref["fwdbwd"] = None
            print(
                f"| torch pscan ({args.threads} threads) | {length} | {_fmt_ms(ref['fwd'])} | "
                f"{_fmt_us_tok(ref['fwd'], tokens)} | {_fmt_ms(ref['fwdbwd'])} | "
                f"{_fmt_us_tok(ref['fwdbwd'], tokens)} | ~{_fmt_mb(ref['fwd_est'])} (est.) | "
                f"~{_fmt_mb(ref['fwdbwd_est'])} (est.) | 1 | 1 |",
                flush=True,
            )
        for method in args.methods:
            r = bench_jax(
                method, args.batch, length, args.d, args.n, args.chunk_size, args.repeats, args.max_gb
            )
            if args.no_backward:
                r["fwdbwd"] = None
            row = (
                f"| {method} | {length} | {_fmt_ms(r['fwd'])} | {_fmt_us_tok(r['fwd'], tokens)} | "
                f"{_fmt_ms(r['fwdbwd'])} | {_fmt_us_tok(r['fwdbwd'], tokens)} | "
                f"{_fmt_mb(r['fwd_temp'])} | {_fmt_mb(r['fwdbwd_temp'])} |"
            )
            if ref is not None:
                row += f" {_fmt_ratio(r['fwd'], ref['fwd'])} | {_fmt_ratio(r['fwdbwd'], ref['fwdbwd'])} |"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, ValueError) as e:  # one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
