"""Device mesh, multi-host start-up and the shardings of the train state and batches.

One ``('data',)`` mesh over every device of every process: batches are split along their leading axis,
the train state is replicated. Each process feeds only its own slice of the global batch and
``jax.make_array_from_process_local_data`` assembles the global array, so the same code runs on one CPU,
one GPU, a TPU VM and several hosts. :func:`maybe_initialize_distributed` starts JAX's distributed
runtime whenever the environment describes several processes (:func:`detect_multiprocess`).
"""

from __future__ import annotations

import glob
import os
import sys
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

_initialized = False

# SLURM's variables that JAX's SlurmCluster needs (jax/_src/clusters/slurm_cluster.py)
_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def _count(value: str | None, default: int = 1) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _gce_tpu_hosts() -> int:
    """Hosts of this Cloud TPU slice from the GCE metadata server (the source JAX's GceTpuCluster reads):
    1 when this is no TPU VM or the server does not answer within 2 s."""
    if os.environ.get("TPU_SKIP_MDS_QUERY") is not None:
        return 1
    if not (glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")):  # no TPU chips on this machine
        return 1
    return metadata_worker_count(os.environ.get("GCE_METADATA_IP", "metadata.google.internal"))


def metadata_worker_count(host: str, timeout: float = 2.0) -> int:
    """The number of entries of the TPU VM metadata's ``worker-network-endpoints`` at ``host`` (one per
    worker of the slice); 1 when it cannot be read."""
    url = f"http://{host}/computeMetadata/v1/instance/attributes/worker-network-endpoints"
    req = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (a fixed http URL)
            text = r.read().decode()
    except OSError:
        return 1
    return max(1, len([e for e in text.split(",") if e.strip()]))


def detect_multiprocess(
    environ: Mapping[str, str] | None = None, tpu_hosts: Callable[[], int] = _gce_tpu_hosts
) -> tuple[str, dict[str, Any]] | None:
    """The multi-process environment this process runs in, as ``(name, jax.distributed.initialize
    kwargs)``, or None for a single process. In order:

    ``FER_JAX_DISTRIBUTED=0`` (off); ``FER_JAX_COORDINATOR`` + ``FER_JAX_NUM_PROCESSES`` +
    ``FER_JAX_PROCESS_ID`` (explicit); ``JAX_COORDINATOR_ADDRESS`` (+ ``JAX_NUM_PROCESSES`` /
    ``JAX_PROCESS_ID``; JAX itself reads only the address); SLURM with more than one task; Open MPI
    (``OMPI_MCA_orte_hnp_uri``) with more than one rank; a TPU slice named by its environment (GKE:
    ``TPU_WORKER_HOSTNAMES`` / ``TPU_PROCESS_ADDRESSES`` with several hosts, multislice:
    ``MEGASCALE_COORDINATOR_ADDRESS``); ``FER_JAX_DISTRIBUTED=1`` (forced); a Cloud TPU VM whose
    metadata lists several workers (a pod slice started with ``--worker=all``). The empty kwargs leave
    the rest to JAX's cluster auto-detection. Raises ValueError (one line) on an incomplete explicit set.
    """
    env = os.environ if environ is None else environ
    forced = env.get("FER_JAX_DISTRIBUTED", "")
    if forced == "0":
        return None
    for prefix, address in (("FER_JAX_", "FER_JAX_COORDINATOR"), ("JAX_", "JAX_COORDINATOR_ADDRESS")):
        if not env.get(address):
            continue
        kwargs: dict[str, Any] = {"coordinator_address": env[address]}
        for key, name in (("num_processes", "NUM_PROCESSES"), ("process_id", "PROCESS_ID")):
            value = env.get(prefix + name)
            if value is None and prefix == "FER_JAX_":
                raise ValueError(f"{address} is set but {prefix + name} is not")
            if value is not None:
                if not value.strip().isdigit():
                    raise ValueError(f"{prefix + name}={value!r} must be an integer >= 0")
                kwargs[key] = int(value)
        return address, kwargs
    if all(v in env for v in _SLURM) and _count(env.get("SLURM_NTASKS")) > 1:
        return "SLURM", {}
    if "OMPI_MCA_orte_hnp_uri" in env and _count(env.get("OMPI_COMM_WORLD_SIZE"), 2) > 1:
        return "Open MPI", {}
    for var in ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
        if len([h for h in env.get(var, "").split(",") if h.strip()]) > 1:
            return f"TPU slice ({var})", {}
    if env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "TPU multislice", {}
    if forced == "1":
        return "FER_JAX_DISTRIBUTED=1", {}
    if tpu_hosts() > 1:
        return "TPU pod slice", {}
    return None


def maybe_initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize()`` when :func:`detect_multiprocess` finds several processes,
    then prints one line naming this process's index and the process count (stderr, every process).

    With ``JAX_PLATFORMS=cpu`` (or ``FER_JAX_CPU_COLLECTIVES=1``) CPU processes talk over gloo (the
    2-process CPU rehearsal). Returns True when a distributed runtime runs. Must run before any other JAX
    call that touches a backend; later calls return at once.
    """
    global _initialized
    if _initialized:
        return True
    found = detect_multiprocess()
    if found is None:
        return False
    name, kwargs = found
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or os.environ.get("FER_JAX_CPU_COLLECTIVES"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    _initialized = True
    print(
        f"distributed: process {jax.process_index()} of {jax.process_count()} ({name}), "
        f"{jax.local_device_count()} local of {jax.device_count()} device(s)",
        file=sys.stderr,
        flush=True,
    )
    return True


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
