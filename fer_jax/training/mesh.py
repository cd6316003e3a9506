"""Device mesh, multi-host start-up and the shardings of the train state and batches.

One ``('data',)`` mesh over every device of every process: batches are split along their leading axis,
the train state is replicated. Each process feeds only its own slice of the global batch and
``jax.make_array_from_process_local_data`` assembles the global array, so the same code runs on one CPU,
one GPU, a TPU VM and several hosts.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

_initialized = False


def maybe_initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize()`` when the environment describes a multi-process run.

    Triggers: ``FER_JAX_COORDINATOR`` + ``FER_JAX_NUM_PROCESSES`` + ``FER_JAX_PROCESS_ID`` (explicit, used
    by the 2-process CPU rehearsal; CPU processes then talk over gloo), or the variables JAX detects itself
    (``JAX_COORDINATOR_ADDRESS``, TPU pod slices, SLURM, Open MPI) when ``FER_JAX_DISTRIBUTED=1``.
    Returns True when a distributed runtime was started. Must run before any other JAX call.
    """
    global _initialized
    if _initialized:
        return True
    coord = os.environ.get("FER_JAX_COORDINATOR")
    if coord:
        if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or os.environ.get("FER_JAX_CPU_COLLECTIVES"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coord,
            num_processes=int(os.environ["FER_JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["FER_JAX_PROCESS_ID"]),
        )
        _initialized = True
    elif os.environ.get("FER_JAX_DISTRIBUTED") == "1" or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
        _initialized = True
    return _initialized


def make_mesh() -> Mesh:
    """A 1-d ``('data',)`` mesh over all devices of all processes.

    Auto axis type: XLA propagates the batch sharding through the model, so model code needs no
    sharding annotations (with Explicit axes every reshape of a sharded batch would need one).
    """
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
    """Raises ValueError unless the global batch splits evenly over devices and processes."""
    n_dev = mesh.devices.size
    if global_batch % n_dev:
        raise ValueError(f"batch size {global_batch} is not a multiple of the {n_dev} devices")
    from fer_jax.data.pipeline import local_batch_size  # the per-process rule has one home

    local_batch_size(global_batch, jax.process_count())


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Places a host pytree (identical on every process) replicated on every device of ``mesh``."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # typed keys travel as their key data
            data = jax.make_array_from_process_local_data(sharding, np.asarray(jax.random.key_data(x)))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, tree)


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of a batch (dict of ``(local_B, ...)`` arrays) -> global arrays sharded on
    ``'data'`` (global batch = local batch x processes)."""
    sharding = data_sharded(mesh)
    if jax.process_count() == 1:  # one asynchronous transfer (the prefetch overlaps it with the step)
        return jax.device_put({k: np.asarray(v) for k, v in batch.items()}, sharding)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
