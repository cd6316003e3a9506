"""orbax checkpoints of a run: the train state, the data iterator position and the loop's bookkeeping.

``<workdir>/checkpoints/latest`` keeps the newest ``train.keep_checkpoints`` steps (for resuming);
``<workdir>/checkpoints/best`` keeps the single step with the best validation UAR (for ``evaluate``).
Each step directory holds three items:

- ``state``: the train state pytree (params, BatchNorm statistics, the dropout RNG key and counter,
  optimizer state, EMA, step), saved as a flat dict ``{"00012.params.conv.kernel": array}`` so that any
  pytree node type (``nnx.State``, optax named tuples) round-trips; typed PRNG keys are stored as raw key
  data;
- ``data_iter``: one JSON file per JAX process with that process's grain iterator state;
- ``meta``: JSON (early-stopping state, eval history length, metrics of the step).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

# ---------------------------------------------------------------------------------------------------
# grain iterator state: one file per process (iterators are per-process)


@dataclasses.dataclass
class IterStateSave(ocp.args.CheckpointArgs):
    state: Any  # whatever the iterator's get_state() returned: dict, bytes or str


@dataclasses.dataclass
class IterStateRestore(ocp.args.CheckpointArgs):
    pass


class IterStateHandler(ocp.CheckpointHandler):
    """Writes ``process_<i>-of-<n>.json`` (as grain's own handler does), independent of the iterator class."""

    def save(self, directory: epath.Path, args: IterStateSave) -> None:
        state = args.state
        if isinstance(state, bytes):
            payload = {"kind": "bytes", "value": state.decode()}
        elif isinstance(state, str):
            payload = {"kind": "str", "value": state}
        else:
            payload = {"kind": "json", "value": state}
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        (directory / name).write_text(json.dumps(payload))

    def restore(self, directory: epath.Path, args: IterStateRestore | None = None) -> Any:
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        path = directory / name
        if not path.exists():
            raise FileNotFoundError(
                f"no data-iterator state {path} (was the run saved with another process count?)"
            )
        payload = json.loads(path.read_text())
        if payload["kind"] == "bytes":
            return payload["value"].encode()
        return payload["value"]

    def metadata(self, directory):  # required by newer orbax interfaces
        return None


ocp.args.register_with_handler(IterStateHandler, for_save=True)(IterStateSave)
ocp.args.register_with_handler(IterStateHandler, for_restore=True)(IterStateRestore)

# ---------------------------------------------------------------------------------------------------
# state pytree <-> flat dict


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _names(tree: Any) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = []
    for i, (path, _) in enumerate(paths):
        s = re.sub(r"[^A-Za-z0-9_]+", ".", jax.tree_util.keystr(path)).strip(".")
        s = s.replace(".value", "")
        out.append(f"{i:05d}.{s}")
    return out


def flatten_state(tree: Any) -> dict[str, Any]:
    """``{name: array}`` in pytree order; PRNG keys replaced by their key data."""
    leaves = jax.tree.leaves(tree)
    return {n: (_key_data(x) if _is_key(x) else x) for n, x in zip(_names(tree), leaves)}


def _key_data(x):
    if isinstance(x, jax.ShapeDtypeStruct):  # an abstract restore target
        data = jax.eval_shape(jax.random.key_data, x)
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
    return jax.random.key_data(x)


def unflatten_state(target: Any, flat: dict[str, Any]) -> Any:
    """Puts ``flat`` (from ``flatten_state``) back into ``target``'s structure; raises ValueError on a
    mismatch (a checkpoint of another model or config)."""
    leaves, treedef = jax.tree.flatten(target)
    names = _names(target)
    if set(names) != set(flat):
        missing = sorted(set(names) - set(flat))[:3]
        extra = sorted(set(flat) - set(names))[:3]
        raise ValueError(f"checkpoint does not match the model: missing {missing}, unexpected {extra}")
    new = []
    for n, t in zip(names, leaves):
        v = flat[n]
        if _is_key(t):
            # an abstract target's key dtype has no array to ask; the default impl is the one models use
            impl = None if isinstance(t, jax.ShapeDtypeStruct) else jax.random.key_impl(t)
            v = jax.random.wrap_key_data(v, impl=impl)
        elif tuple(v.shape) != tuple(t.shape):
            raise ValueError(f"checkpoint does not match the model: {n} has shape {v.shape}, model {t.shape}")
        new.append(v)
    return jax.tree.unflatten(treedef, new)


def _abstract(flat: dict[str, Any]) -> dict[str, Any]:
    def spec(x):
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return {k: spec(v) for k, v in flat.items()}


# ---------------------------------------------------------------------------------------------------


class RunCheckpoints:
    """The two managers of a run (``latest`` and ``best``) behind save / restore calls."""

    def __init__(self, workdir: str | Path, *, keep: int = 2, read_only: bool = False):
        root = Path(workdir).absolute() / "checkpoints"
        items = ("state", "data_iter", "meta")

        def manager(sub: str, max_to_keep: int) -> ocp.CheckpointManager:
            # read_only: no directory creation (orbax's own read_only flag only adds warnings to the output)
            # several processes: synchronous saves (async ones raced in the 2-process CPU rehearsal: orbax
            # finalised a step before process 1 had written its array metadata)
            opts = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=not read_only,
                enable_async_checkpointing=jax.process_count() == 1,
            )
            return ocp.CheckpointManager(root / sub, options=opts, item_names=items)

        self.latest = manager("latest", max(int(keep), 1))
        self.best = manager("best", 1)

    def _manager(self, which: str) -> ocp.CheckpointManager:
        return self.best if which == "best" else self.latest

    def save(self, which: str, step: int, state: Any, iter_state: Any, meta: dict) -> None:
        """Saves (asynchronously for arrays; the host copy is taken before returning)."""
        mgr = self._manager(which)
        if int(step) in mgr.all_steps():  # same step, newer bookkeeping (e.g. saved again on SIGTERM)
            mgr.wait_until_finished()
            mgr.delete(int(step))
        mgr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(flatten_state(state)),
                data_iter=IterStateSave(iter_state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    def steps(self, which: str = "latest") -> list[int]:
        return list(self._manager(which).all_steps())

    def latest_step(self, which: str = "latest") -> int | None:
        return self._manager(which).latest_step()

    def restore(self, which: str, step: int, target_state: Any) -> tuple[Any, Any, dict]:
        """Returns ``(state, iter_state, meta)``; ``state`` takes ``target_state``'s structure and shardings."""
        mgr = self._manager(which)
        flat_target = flatten_state(target_state)
        try:
            restored = mgr.restore(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_abstract(flat_target)),
                    data_iter=IterStateRestore(),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except ValueError as e:  # orbax lists every differing leaf: keep the user's message short
            if "do not match" not in str(e) and "mismatch" not in str(e):
                raise
            raise ValueError(
                f"checkpoint {step} does not match the model (another model, config or EMA setting?)"
            ) from None
        state = unflatten_state(target_state, dict(restored["state"]))
        return state, restored["data_iter"], dict(restored["meta"])

    def restore_meta(self, which: str, step: int) -> dict:
        restored = self._manager(which).restore(
            int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore())
        )
        return dict(restored["meta"])

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def to_host(tree: Any) -> Any:
    """Device pytree -> numpy (for small logs)."""
    return jax.tree.map(np.asarray, tree)
