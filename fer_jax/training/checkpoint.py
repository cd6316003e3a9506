"""orbax checkpoints of a run: the train state, the data iterator position and the loop's bookkeeping.

``<workdir>/checkpoints/latest`` keeps the newest ``train.keep_checkpoints`` steps (for resuming);
``<workdir>/checkpoints/best`` keeps the single step with the best validation UAR (for ``evaluate``).
Each step directory holds three items:

- ``state``: the train state pytree (params, BatchNorm statistics, the dropout RNG key and counter,
  optimizer state, EMA, step), saved as a flat dict keyed by each leaf's tree path
  (``{"params/fc/kernel": array, "opt_state/0/mu/fc/kernel": array, ...}``) so that any pytree node type
  (``nnx.State``, optax named tuples) round-trips and adding a leaf renames no other one; typed PRNG keys
  are stored as raw key data;
- ``data_iter``: one JSON file per JAX process with that process's grain iterator state;
- ``meta``: JSON (early-stopping state, eval history length, metrics of the step).

Restoring matches leaves by name into a target state: a checkpoint of another model or config raises
:class:`CheckpointMismatchError` with a one-line message naming the first differing leaves, a step whose
files cannot be read (truncated, corrupted) raises :class:`CheckpointUnreadableError`, also one line.
Resuming goes through :meth:`RunCheckpoints.restore_latest_good`, which tries the kept steps newest-first
and returns a note for every unreadable step it skipped, so a corrupted newest checkpoint falls back to
the previous kept one instead of ending the run.

Checkpoints written before the names dropped their position prefix (``00012.params.fc.kernel``) are still
restored.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from fer_jax.paths import as_path


class CheckpointMismatchError(ValueError):
    """The checkpoint holds the state of another model or config (leaf names or shapes differ)."""


class CheckpointUnreadableError(RuntimeError):
    """A checkpoint step's files cannot be read (truncated, corrupted or missing)."""


# ---------------------------------------------------------------------------------------------------
# grain iterator state: one file per process (iterators are per-process)
#
# Not grain's own ``grain.checkpoint.CheckpointHandler``: that one takes the *iterator* (it calls
# ``get_state()`` on save and ``set_state()`` + ``start_prefetch()`` on restore, so the iterator must exist
# before the checkpoint is read) and decides the file format by ``isinstance(item, DatasetIterator)``,
# otherwise calling ``.decode()`` on the state, i.e. it needs bytes. ``RunCheckpoints`` carries state
# *values* (bytes from ``grain.DataLoader`` iterators, dicts from ``MapDataset`` iterators and the tests'
# fakes), and run folders already hold this handler's files.


@dataclasses.dataclass
class IterStateSave(ocp.args.CheckpointArgs):
    state: Any  # whatever the iterator's get_state() returned: dict, bytes or str


@dataclasses.dataclass
class IterStateRestore(ocp.args.CheckpointArgs):
    pass


class IterStateHandler(ocp.CheckpointHandler):
    """Writes ``process_<i>-of-<n>.json`` (file names as grain's handler), independent of the iterator class."""

    def save(self, directory: epath.Path, args: IterStateSave) -> None:
        state = args.state
        if isinstance(state, bytes):
            payload = {"kind": "bytes", "value": state.decode()}
        elif isinstance(state, str):
            payload = {"kind": "str", "value": state}
        else:
            payload = {"kind": "json", "value": state}
        (directory / _process_file()).write_text(json.dumps(payload))

    def restore(self, directory: epath.Path, args: IterStateRestore | None = None) -> Any:
        path = directory / _process_file()
        if not path.exists():
            counts = sorted(
                {p.name.rsplit("-of-", 1)[-1].removesuffix(".json") for p in directory.glob("process_*")}
            )
            if counts:  # a configuration difference, not damage: no older step would restore either
                raise CheckpointMismatchError(
                    f"the checkpoint was saved by {' or '.join(counts)} JAX process(es), this run has "
                    f"{jax.process_count()}: the data-iterator positions do not carry over"
                )
            raise FileNotFoundError(f"no data-iterator state {path}")
        payload = json.loads(path.read_text())
        if payload["kind"] == "bytes":
            return payload["value"].encode()
        return payload["value"]

    def metadata(self, directory: epath.Path) -> None:  # required by newer orbax interfaces
        return None


def _process_file() -> str:
    return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


ocp.args.register_with_handler(IterStateHandler, for_save=True)(IterStateSave)
ocp.args.register_with_handler(IterStateHandler, for_restore=True)(IterStateRestore)

# ---------------------------------------------------------------------------------------------------
# state pytree <-> flat dict keyed by tree path


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _entry_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _path_name(path: tuple) -> str:
    entries = list(path)
    # an nnx.Variable flattens to its payload as a trailing ``.value``: part of no user-visible name
    if entries and isinstance(entries[-1], jax.tree_util.GetAttrKey) and entries[-1].name == "value":
        entries = entries[:-1]
    return "/".join(_entry_name(e) for e in entries)


def leaf_names(tree: Any) -> list[str]:
    """Checkpoint name of every leaf of ``tree`` in pytree order (``params/fc/kernel``); unique."""
    names = [_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        raise ValueError(f"two leaves of the train state have the checkpoint name {dup!r}")
    return names


def flatten_state(tree: Any) -> dict[str, Any]:
    """``{name: array}`` in pytree order; PRNG keys replaced by their key data."""
    leaves = jax.tree.leaves(tree)
    return {n: (_key_data(x) if _is_key(x) else x) for n, x in zip(leaf_names(tree), leaves)}


def _key_data(x: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct):  # an abstract restore target
        data = jax.eval_shape(jax.random.key_data, x)
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
    return jax.random.key_data(x)


def _model_first(name: str) -> tuple[bool, str]:
    # the model's own leaves first: the optimizer and EMA copies of a changed layer say nothing more
    return not name.startswith(("params/", "rest/")), name


def _first(names: set[str], limit: int = 3) -> str:
    shown = sorted(names, key=_model_first)[:limit]
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(shown) + more


def _check_match(target_shapes: dict[str, tuple], stored_shapes: dict[str, tuple]) -> None:
    """Raises :class:`CheckpointMismatchError` (one line) unless both map the same names to the same shapes."""
    missing = set(target_shapes) - set(stored_shapes)
    unexpected = set(stored_shapes) - set(target_shapes)
    if missing or unexpected:
        parts = ([f"missing {_first(missing)}"] if missing else []) + (
            [f"unexpected {_first(unexpected)}"] if unexpected else []
        )
        raise CheckpointMismatchError(
            f"checkpoint does not match the model (another model, config or EMA setting?): {', '.join(parts)}"
        )
    for name in sorted(target_shapes, key=_model_first):
        shape = target_shapes[name]
        if tuple(stored_shapes[name]) != tuple(shape):
            raise CheckpointMismatchError(
                f"checkpoint does not match the model: {name} has shape {tuple(stored_shapes[name])} in the "
                f"checkpoint, {tuple(shape)} in the model"
            )


def unflatten_state(target: Any, flat: dict[str, Any]) -> Any:
    """Puts ``flat`` (from ``flatten_state``) back into ``target``'s structure, matching leaves by name;
    raises :class:`CheckpointMismatchError` on a mismatch (a checkpoint of another model or config)."""
    leaves, treedef = jax.tree.flatten(target)
    names = leaf_names(target)
    target_flat = flatten_state(target)
    _check_match(
        {n: tuple(x.shape) for n, x in target_flat.items()}, {n: tuple(v.shape) for n, v in flat.items()}
    )
    new = []
    for n, t in zip(names, leaves):
        v = flat[n]
        if _is_key(t):
            # an abstract target's key dtype has no array to ask; the default impl is the one models use
            impl = None if isinstance(t, jax.ShapeDtypeStruct) else jax.random.key_impl(t)
            v = jax.random.wrap_key_data(v, impl=impl)
        new.append(v)
    return jax.tree.unflatten(treedef, new)


# Run folders written before names were tree paths only hold ``{i:05d}.<dotted path>`` names (the index
# renamed every later leaf when one was added): strip the index and match the dotted path instead.
_LEGACY_INDEX = re.compile(r"^\d{5}\.")


def _legacy_names(tree: Any) -> list[str]:
    """The dotted names of the old format without their index (verbatim the old rule, ``.value`` quirk too)."""
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        s = re.sub(r"[^A-Za-z0-9_]+", ".", jax.tree_util.keystr(path)).strip(".")
        out.append(s.replace(".value", ""))
    return out


def _stored_to_current(stored: list[str], target: Any) -> dict[str, str]:
    """Maps each name in the checkpoint to the target's name for that leaf (identity for the new format)."""
    if not stored or not all(_LEGACY_INDEX.match(n) for n in stored):
        return {n: n for n in stored}
    current = dict(zip(_legacy_names(target), leaf_names(target)))
    out = {}
    for n in stored:
        bare = _LEGACY_INDEX.sub("", n)
        out[n] = current.get(bare, bare)
    return out


def _abstract(flat: dict[str, Any]) -> dict[str, Any]:
    def spec(x: Any) -> jax.ShapeDtypeStruct:
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return {k: spec(v) for k, v in flat.items()}


def _is_stray_loop_callback(unraisable: Any) -> bool:
    exc = unraisable.exc_value
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed" and unraisable.object is None


def _quiet_stray_loop_callbacks() -> None:
    """When an orbax restore fails (a corrupted step), tensorstore reads still in flight report to orbax's
    already closed event loop and Python prints each as an ignored-exception traceback: noise around the
    one-line note. Installed once; drops exactly those, every other unraisable exception still reaches
    the previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, "_fer_jax_filter", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_stray_loop_callback(unraisable):
            previous(unraisable)

    hook._fer_jax_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _reason(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line`` of an exception, shortened: the note's parenthesis, never a traceback."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------


class RunCheckpoints:
    """The two managers of a run (``latest`` and ``best``) behind save / restore calls."""

    def __init__(self, workdir: str | Path, *, keep: int = 2, read_only: bool = False):
        root = as_path(workdir) / "checkpoints"  # a gs:// workdir stays remote (orbax writes it)

        def manager(sub: str, max_to_keep: int) -> ocp.CheckpointManager:
            # read_only: no directory creation (orbax's own read_only flag only adds warnings to the output)
            # several processes: synchronous saves (async ones raced in the 2-process CPU rehearsal: orbax
            # finalised a step before process 1 had written its array metadata)
            opts = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=not read_only,
                enable_async_checkpointing=jax.process_count() == 1,
            )
            # handlers given up front (not just item names): a fresh manager can then read a step's
            # array metadata (names, shapes) before restoring, which the name check needs
            handlers = {
                "state": ocp.StandardCheckpointHandler(),
                "data_iter": IterStateHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            }
            return ocp.CheckpointManager(root / sub, options=opts, item_handlers=handlers)

        self.root = root
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
        """Returns ``(state, iter_state, meta)``; ``state`` takes ``target_state``'s structure and shardings.

        Raises :class:`CheckpointMismatchError` when the names or shapes differ from ``target_state``'s,
        :class:`CheckpointUnreadableError` when the step's files cannot be read; both one line.
        """
        mgr = self._manager(which)
        step = int(step)
        flat_target = flatten_state(target_state)
        try:
            tree = mgr.item_metadata(step)["state"]
            if tree is None:
                raise FileNotFoundError("no array metadata")
            stored = {n: tuple(m.shape) for n, m in tree.items()}
        except Exception as e:  # noqa: BLE001 (any failure to read the step's metadata is unreadable)
            raise CheckpointUnreadableError(f"checkpoint step {step} is unreadable ({_reason(e)})") from e
        rename = _stored_to_current(list(stored), target_state)
        _check_match(
            {n: tuple(x.shape) for n, x in flat_target.items()},
            {rename[n]: shape for n, shape in stored.items()},
        )
        abstract = _abstract(flat_target)
        _quiet_stray_loop_callbacks()  # before: the stray callbacks can fire before orbax's error arrives
        try:
            restored = mgr.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore({n: abstract[rename[n]] for n in stored}),
                    data_iter=IterStateRestore(),
                    meta=ocp.args.JsonRestore(),
                ),
            )
            meta = dict(restored["meta"])
        except CheckpointMismatchError:
            raise
        except Exception as e:  # noqa: BLE001 (names and shapes matched: what fails now is the files)
            raise CheckpointUnreadableError(f"checkpoint step {step} is unreadable ({_reason(e)})") from e
        flat = {rename[n]: v for n, v in dict(restored["state"]).items()}
        return unflatten_state(target_state, flat), restored["data_iter"], meta

    def restore_latest_good(self, which: str, target_state: Any) -> tuple[int, Any, Any, dict, list[str]]:
        """Restores the newest readable kept step: ``(step, state, iter_state, meta, skipped)``.

        ``skipped`` holds one line per newer step that could not be read (``checkpoint step 40 is
        unreadable (...); using step 20``) for the caller to print. Raises :class:`CheckpointMismatchError`
        at once (an older step of the same run would not match either), :class:`CheckpointUnreadableError`
        when no kept step is readable and ``FileNotFoundError`` when there is none.
        """
        steps = sorted(self.steps(which), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.root / which}")
        bad: list[str] = []
        for step in steps:
            try:
                state, iter_state, meta = self.restore(which, step, target_state)
            except CheckpointUnreadableError as e:
                bad.append(str(e))
                continue
            return step, state, iter_state, meta, [f"{msg}; using step {step}" for msg in bad]
        reasons = "; ".join(m.removeprefix("checkpoint ") for m in bad)
        raise CheckpointUnreadableError(f"no readable checkpoint in {self.root / which}: {reasons}")

    def set_aside_newer(self, which: str, step: int) -> list[Path]:
        """Renames every kept step newer than ``step`` to ``<step>.unreadable`` (process 0) and returns the
        new paths. After a fallback restore these are the unreadable steps: renamed, not deleted (the user
        may want to inspect them), and out of orbax's way so the resumed run can save those steps anew."""
        mgr = self._manager(which)
        newer = [s for s in mgr.all_steps() if s > int(step)]
        moved = []
        if newer and jax.process_index() == 0:
            mgr.wait_until_finished()
            for s in newer:
                src = self.root / which / str(s)
                dst = src.with_name(f"{s}.unreadable")
                n = 1
                while dst.exists():
                    n += 1
                    dst = src.with_name(f"{s}.unreadable{n}")
                src.rename(dst)
                moved.append(dst)
        if newer:
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices("fer_jax_set_aside_newer")
            mgr.reload()
        return moved

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
