"""FER_JAX_CPU_THREADS: the CPU client's pool is sized while pinned, then every thread gets all cores back."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_jax import cpu_threads

ROOT = Path(__file__).resolve().parents[1]
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1

# run in a fresh interpreter: the pool is sized when the backend starts, once per process
PROBE = """
import os, sys, json
from fer_jax import cpu_threads
n = cpu_threads.apply_from_env()
import jax.numpy as jnp
x = jnp.arange(64.0).reshape(8, 8)
total = float((x @ x).sum())
masks = {tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir("/proc/self/task")}
print(json.dumps({"n": n, "threads": len(os.listdir("/proc/self/task")), "masks": sorted(masks), "total": total}))
"""


def _probe(value: str | None) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k != cpu_threads.ENV}
    if value is not None:
        env[cpu_threads.ENV] = value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("text", [None, "", "  "])
def test_unset_or_empty_asks_for_nothing(text):
    assert cpu_threads.parse(text, 2) is None


@pytest.mark.parametrize(("text", "match"), [("abc", "whole number"), ("1.5", "whole number"), ("0", "1 to 2"),
                                             ("3", "1 to 2"), ("-1", "1 to 2")])  # fmt: skip
def test_bad_values_are_one_line_errors(text, match):
    with pytest.raises(ValueError, match=match) as e:
        cpu_threads.parse(text, 2)
    assert cpu_threads.ENV in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(CORES < 2 or not sys.platform.startswith("linux"), reason="needs 2 cores and Linux")
def test_one_thread_pool_then_every_thread_may_use_every_core():
    plain, one = _probe(None), _probe("1")
    assert plain["n"] is None and one["n"] == 1
    # the pool is smaller (XLA's pool threads are the difference) ...
    assert one["threads"] < plain["threads"], (one, plain)
    # ... yet no thread stays pinned: the scheduler may move the process to any core
    full = sorted(os.sched_getaffinity(0))
    assert one["masks"] == [full] and plain["masks"] == [full]
    assert one["total"] == plain["total"]


def test_a_bad_value_stops_the_cli_with_one_line(tmp_path):
    env = dict(os.environ, **{cpu_threads.ENV: "many"})
    r = subprocess.run(
        [sys.executable, "-m", "fer_jax.evaluate", "--workdir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {cpu_threads.ENV}='many': expected a whole number of threads"
    ]
