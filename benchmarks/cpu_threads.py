"""Several trainings side by side on one CPU machine, with XLA's default pool and with FER_JAX_CPU_THREADS.

    python benchmarks/cpu_threads.py [--configs demo_see demo_see_rgb demo_dfew] [--steps 40]
                                     [--threads default 1] [--out docs/bench/cpu_threads.md]

For each setting of ``--threads`` ("default": the variable unset, XLA's pool takes every core; a number:
``FER_JAX_CPU_THREADS`` = that) it starts one ``benchmarks/train_step.py`` process per config at the same
time (as ``make demo``'s lanes run) and reports each process's compile and step time and the wall time
until the last one ends. Time it on a quiet machine: the point is how the processes share the cores.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from report_text import emit, printed_by

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (\S+) \| \S+ \| \d+ \| [\d.]+ \| ([\d.]+) \| ([\d.]+) \|")


def run_setting(threads: str, configs: list[str], steps: int) -> dict:
    """Starts every config's train_step.py at once; returns {"wall_s", "rows": {config: (compile, step_ms)}}."""
    env = {k: v for k, v in os.environ.items() if k != "FER_JAX_CPU_THREADS"}
    env["PYTHONPATH"] = str(ROOT)
    if threads != "default":
        env["FER_JAX_CPU_THREADS"] = threads
    start = time.perf_counter()
    procs = {
        c: subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "train_step.py"),
                "--configs",
                c,
                "--steps",
                str(steps),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        for c in configs
    }
    rows = {}
    for c, p in procs.items():
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"error: train_step.py --configs {c} exited {p.returncode}")
        for line in out.splitlines():
            if m := ROW.match(line):
                rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return {"wall_s": time.perf_counter() - start, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/cpu_threads.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["demo_see", "demo_see_rgb", "demo_dfew"])
    p.add_argument("--steps", type=int, default=40, help="timed steps per process (after one warm-up)")
    p.add_argument("--threads", nargs="+", default=["default", "1"], help='"default" or a pool size')
    p.add_argument("--out", default=None, help="also write the Markdown table here")
    a = p.parse_args(argv)
    for t in a.threads:
        if t != "default" and not t.isdigit():
            p.error(f'--threads takes "default" or a whole number, got {t!r}')
    head = printed_by("cpu_threads.py", argv)  # the load before the runs: was the machine quiet?
    results = {t: run_setting(t, a.configs, a.steps) for t in a.threads}
    lines = [
        f"{head} at the start. The {len(a.configs)} processes run at the same time; "
        f"step = mean ms over {a.steps} steps.",
        "",
        "| pool | " + " | ".join(f"{c} compile s / step ms" for c in a.configs) + " | wall s, all done |",
        "|---|" + "---:|" * (len(a.configs) + 1),
    ]
    for t, r in results.items():
        cells = [
            f"{r['rows'][c][0]:.1f} / {r['rows'][c][1]:.0f}" if c in r["rows"] else "n/a" for c in a.configs
        ]
        name = "XLA default (every core)" if t == "default" else f"FER_JAX_CPU_THREADS={t}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['wall_s']:.0f} |")
    emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
