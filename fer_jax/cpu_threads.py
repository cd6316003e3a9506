"""XLA:CPU's intra-op thread pool size, for several JAX processes side by side on one CPU machine.

XLA sizes the CPU client's thread pool from the process's CPU affinity when the client is created, and has
no flag for it (``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` are ignored by the
current runtime: same step time, same CPU use). ``FER_JAX_CPU_THREADS=N`` makes :func:`apply_from_env`
create the client while the process is pinned to N of its cores, then give every thread all of them
back: the pool keeps N threads (a job's share of a shared machine is capped) and the scheduler still
moves the process to whichever core is free. It is not a speed-up for runs side by side: three demo
trainings on 2 cores took 171 s with default pools and 174 s with one thread each
(benchmarks/cpu_threads.py, docs/benchmarks.md). The pool size changes float rounding (from the second
training step on). Unset: nothing happens.
"""

from __future__ import annotations

import os
import sys

ENV = "FER_JAX_CPU_THREADS"


def parse(text: str | None, cores: int) -> int | None:
    """The pool size ``text`` asks for (None when unset or empty); a one-line ValueError when it is not a
    whole number from 1 to ``cores``."""
    if text is None or not text.strip():
        return None
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected a whole number of threads") from None
    if not 1 <= n <= cores:
        raise ValueError(f"{ENV}={n}: this process may use 1 to {cores} cores")
    return n


def apply_from_env(environ=os.environ) -> int | None:
    """Creates the CPU client with a pool of ``$FER_JAX_CPU_THREADS`` threads (see the module docstring);
    returns that size, or None when unset. Call it before anything creates a JAX backend; where one exists
    already it cannot resize it and says so on stderr. Linux only (sched_setaffinity); elsewhere a no-op."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    n = parse(environ.get(ENV), len(allowed))
    if n is None:
        return None
    import jax
    from jax._src import xla_bridge

    from fer_jax.training.mesh import maybe_initialize_distributed

    maybe_initialize_distributed()  # jax.distributed must start before the backend does
    if xla_bridge.backends_are_initialized():
        print(f"note: {ENV} ignored: a JAX backend already exists", file=sys.stderr)
        return None
    os.sched_setaffinity(0, set(sorted(allowed)[:n]))
    try:
        jax.devices("cpu")  # creates the CPU client: its pool takes the n cores it sees now
    finally:
        for tid in os.listdir("/proc/self/task"):  # the pool's threads inherited the narrow mask
            try:
                os.sched_setaffinity(int(tid), allowed)
            except OSError:  # a thread that ended meanwhile
                pass
    return n
