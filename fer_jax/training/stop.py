"""Stopping on SIGINT / SIGTERM at a step that every process agrees on.

A signal sets a per-process flag (:class:`StopSignal`); the save that follows is a collective (orbax), so
with several processes the flag alone is not enough: a signal that reaches one host between two checks
would send it into the save while the others enter the next step's all-reduce, and both would wait
forever. :class:`StopAgreement` makes the decision collective: at every ``train.stop_check_every_steps``-th
step boundary each process contributes its flag (the signal number, 0 for none) to a jitted max over the
``('data',)`` mesh, and all processes act on the same agreed value, so they save the same step and exit
with the same status. One process needs no agreement: its own flag decides at once. (jax 0.10.2's
``multihost_utils.reached_preemption_sync_point`` sees only the SIGTERM that JAX's own preemption notifier
catches, not SIGINT, and ``process_allgather`` would block every check on the step just dispatched.)
"""

from __future__ import annotations

import signal
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fer_jax.training import mesh as mesh_lib


class StopSignal:
    """Context manager: SIGINT / SIGTERM set ``signum`` (the loop saves at an agreed step boundary)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            # None: the old handler was installed outside Python (it cannot be put back); the default then
            signal.signal(sig, signal.SIG_DFL if old is None else old)


@jax.jit
def agree(flags: jax.Array) -> jax.Array:
    """The agreed signal: ``flags`` (num_devices,) int32 sharded on ``'data'`` (each process fills its own
    devices' entries with its flag) -> () int32, the max (0: nobody was signalled; SIGTERM 15 outranks
    SIGINT 2), replicated on every device."""
    return jnp.max(flags)


def local_flags(signum: int | None, mesh: Mesh) -> jax.Array:
    """This process's flag on each of its devices of ``mesh``, assembled into the global (num_devices,)
    int32 array :func:`agree` reduces."""
    n_local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    local = np.full((n_local,), int(signum or 0), np.int32)
    return jax.make_array_from_process_local_data(mesh_lib.data_sharded(mesh), local)


class StopAgreement:
    """The stop decision at step boundaries: ``check(step, signum)`` -> the agreed signal number or None.

    With several processes, every ``every``-th step (counted from step 0, so a resumed run checks at the
    same steps on every process) dispatches :func:`agree` on the local flag and reads the agreement that
    the check before dispatched: a signal stops the run within ``2 * every`` steps, and reading an
    agreement that was queued a step earlier never waits for the step just dispatched (the host stays a
    step ahead of the devices, as without the check). Every process reads the same value at the same step.
    """

    def __init__(self, mesh: Mesh, every: int = 1):
        if int(every) < 1:
            raise ValueError(f"config.train.stop_check_every_steps={every!r} must be an integer >= 1")
        self.mesh, self.every = mesh, int(every)
        self.collective = jax.process_count() > 1
        self._pending: jax.Array | None = None

    def check(self, step: int, signum: int | None) -> int | None:
        if not self.collective:
            return signum
        if step % self.every:
            return None
        agreed = None
        if self._pending is not None:
            agreed = int(np.asarray(self._pending.addressable_data(0))) or None
        # once stopping, no new agreement is dispatched: every process took the same decision
        self._pending = None if agreed else agree(local_flags(signum, self.mesh))
        return agreed
