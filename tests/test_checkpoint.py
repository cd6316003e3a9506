"""fer_jax.training.checkpoint: the train state, iterator position and metadata survive a round trip;
leaves are matched by name; a changed model or a corrupted step gives a one-line message."""

import re
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from fer_jax.training import checkpoint as ckpt_lib
from fer_jax.training import state as state_lib


class _Net(nnx.Module):
    def __init__(self, rngs, out: int = 2, extra: bool = False):
        self.fc = nnx.Linear(3, out, rngs=rngs)
        if extra:  # a layer added between fc and bn (in pytree order: "extra" sorts before "fc")
            self.extra = nnx.Linear(out, out, rngs=rngs)
        self.bn = nnx.BatchNorm(out, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)


def _state(seed, ema=True, **net):
    model = _Net(nnx.Rngs(seed, dropout=seed + 7), **net)
    _, state = state_lib.create_state(model, optax.adamw(1e-3), ema=ema)
    # make every part non-trivial so a wrong mapping would show
    state = jax.tree.map(lambda x: x + 0.5 if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
    state["step"] = jnp.asarray(5 + seed, jnp.int32)
    return state


def _keyless(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if ckpt_lib._is_key(x) else x, tree)


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("iter_state", [b'{"pos": 3}', {"pos": [1, 2]}])
def test_round_trip(tmp_path, iter_state):
    saved = _state(0)
    ckpts = ckpt_lib.RunCheckpoints(tmp_path, keep=2)
    ckpts.save("latest", 5, saved, iter_state, {"early_stopping": {"best": 0.5}, "status": "running"})
    ckpts.wait()
    ckpts.close()
    ckpts = ckpt_lib.RunCheckpoints(tmp_path, read_only=True)  # a fresh process resuming the run
    target = _state(1)  # different values, same structure
    restored, it, meta = ckpts.restore("latest", 5, target)
    ckpts.close()
    chex.assert_trees_all_equal(_keyless(restored), _keyless(saved))
    assert jax.tree.structure(restored) == jax.tree.structure(saved)
    assert any(ckpt_lib._is_key(x) for x in jax.tree.leaves(restored))  # the dropout key is a key again
    assert it == iter_state
    assert meta["early_stopping"]["best"] == 0.5


def test_restores_into_an_abstract_target(tmp_path):
    """evaluate restores into ``jax.ShapeDtypeStruct`` leaves (no initialisation), keys included."""
    saved = _state(0)
    ckpts = ckpt_lib.RunCheckpoints(tmp_path)
    ckpts.save("best", 9, saved, {}, {})
    ckpts.wait()
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), saved)
    restored, _, _ = ckpts.restore("best", 9, target)
    ckpts.close()
    chex.assert_trees_all_equal(_keyless(restored), _keyless(saved))


def test_keeps_latest_n_and_overwrites_a_step(tmp_path):
    s = _state(0)
    ckpts = ckpt_lib.RunCheckpoints(tmp_path, keep=2)
    for step in (1, 2, 3):
        ckpts.save("latest", step, s, {}, {"status": "running"})
    ckpts.save("latest", 3, s, {}, {"status": "interrupted"})  # same step again (SIGTERM right after a save)
    ckpts.wait()
    assert sorted(ckpts.steps("latest")) == [2, 3]
    assert ckpts.latest_step("latest") == 3
    assert ckpts.restore_meta("latest", 3)["status"] == "interrupted"
    ckpts.close()


def test_names_are_tree_paths_without_position():
    flat = ckpt_lib.flatten_state(_state(0))
    assert len(flat) == len(jax.tree.leaves(_state(0)))
    assert {"step", "params/fc/kernel", "rest/bn/mean", "opt_state/0/mu/fc/kernel", "ema/bn/scale"} <= set(
        flat
    )
    assert not any(re.match(r"\d{5}", k) for k in flat)
    assert all(isinstance(v, jax.Array | np.ndarray) for v in flat.values())
    # adding a layer adds names and renames none
    grown = ckpt_lib.flatten_state(_state(0, extra=True))
    assert set(flat) < set(grown)
    assert "params/extra/kernel" in grown


def test_unflatten_matches_by_name_not_order():
    s = _state(0)
    flat = ckpt_lib.flatten_state(s)
    shuffled = dict(reversed(list(flat.items())))
    chex.assert_trees_all_equal(_keyless(ckpt_lib.unflatten_state(_state(1), shuffled)), _keyless(s))


def test_changed_model_names_the_differing_leaves(tmp_path):
    ckpts = ckpt_lib.RunCheckpoints(tmp_path)
    ckpts.save("latest", 1, _state(0, ema=True), {}, {})
    ckpts.wait()
    with pytest.raises(ckpt_lib.CheckpointMismatchError, match="does not match") as e:
        ckpts.restore("latest", 1, _state(0, ema=False))
    msg = _one_line(e)
    assert "unexpected ema/bn/bias, ema/bn/scale, ema/fc/bias (+1 more)" in msg and "missing" not in msg

    with pytest.raises(ckpt_lib.CheckpointMismatchError) as e:
        ckpts.restore("latest", 1, _state(0, extra=True))
    assert "missing params/extra/bias, params/extra/kernel, ema/extra/bias (+5 more)" in _one_line(e)

    with pytest.raises(ckpt_lib.CheckpointMismatchError) as e:  # same names, other sizes
        ckpts.restore("latest", 1, _state(0, out=4))
    assert re.search(r"params/bn/bias has shape \(2,\) in the checkpoint, \(4,\) in the model", _one_line(e))
    # a mismatch is no corruption: the fallback restore does not hide it behind older steps
    with pytest.raises(ckpt_lib.CheckpointMismatchError):
        ckpts.restore_latest_good("latest", _state(0, out=4))
    ckpts.close()


def _legacy_names(tree):
    """The names checkpoints had before (verbatim the old rule): ``{position:05d}.<dotted path>``."""
    out = []
    for i, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(tree)[0]):
        s = re.sub(r"[^A-Za-z0-9_]+", ".", jax.tree_util.keystr(path)).strip(".")
        s = s.replace(".value", "")
        out.append(f"{i:05d}.{s}")
    return out


def test_restores_checkpoints_with_position_prefixed_names(tmp_path):
    saved = _state(0)
    leaves = [jax.random.key_data(x) if ckpt_lib._is_key(x) else x for x in jax.tree.leaves(saved)]
    old = dict(zip(_legacy_names(saved), leaves))
    assert "00000.ema.bn.bias" in old
    mgr = ocp.CheckpointManager(
        tmp_path / "checkpoints" / "latest", item_names=("state", "data_iter", "meta")
    )
    mgr.save(
        7,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(old),
            data_iter=ckpt_lib.IterStateSave(b'{"pos": 9}'),
            meta=ocp.args.JsonSave({"status": "running"}),
        ),
    )
    mgr.wait_until_finished()
    mgr.close()
    ckpts = ckpt_lib.RunCheckpoints(tmp_path, read_only=True)
    restored, it, meta = ckpts.restore("latest", 7, _state(1))
    chex.assert_trees_all_equal(_keyless(restored), _keyless(saved))
    assert it == b'{"pos": 9}' and meta["status"] == "running"
    # and a changed model is named with the index stripped, not as "every later leaf differs"
    with pytest.raises(ckpt_lib.CheckpointMismatchError) as e:
        ckpts.restore("latest", 7, _state(1, ema=False))
    assert "unexpected ema.bn.bias, ema.bn.scale, ema.fc.bias (+1 more)" in _one_line(e)
    ckpts.close()


def _corrupt(tmp_path: Path, step: int, relpath: str) -> None:
    path = tmp_path / "checkpoints" / "latest" / str(step) / relpath
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a truncated write (disk full, killed copy)


@pytest.mark.parametrize("relpath", ["state/_METADATA", "state/manifest.ocdbt", "meta/metadata"])
def test_corrupted_latest_falls_back_to_previous_step(tmp_path, relpath):
    s1, s2 = _state(0), _state(1)
    ckpts = ckpt_lib.RunCheckpoints(tmp_path, keep=3)
    ckpts.save("latest", 20, s1, b'{"pos": 20}', {"step": 20})
    ckpts.save("latest", 40, s2, b'{"pos": 40}', {"step": 40})
    ckpts.wait()
    ckpts.close()
    _corrupt(tmp_path, 40, relpath)

    ckpts = ckpt_lib.RunCheckpoints(tmp_path)
    with pytest.raises(
        ckpt_lib.CheckpointUnreadableError, match=r"^checkpoint step 40 is unreadable \("
    ) as e:
        ckpts.restore("latest", 40, _state(2))
    _one_line(e)
    step, state, it, meta, skipped = ckpts.restore_latest_good("latest", _state(2))
    assert step == 20 and it == b'{"pos": 20}' and meta == {"step": 20}
    chex.assert_trees_all_equal(_keyless(state), _keyless(s1))
    assert len(skipped) == 1 and "\n" not in skipped[0]
    assert re.fullmatch(r"checkpoint step 40 is unreadable \(.+\); using step 20", skipped[0])
    assert sorted(ckpts.steps("latest")) == [20, 40]  # nothing the user owns is deleted

    _corrupt(tmp_path, 20, relpath)
    with pytest.raises(ckpt_lib.CheckpointUnreadableError, match="no readable checkpoint in ") as e:
        ckpts.restore_latest_good("latest", _state(2))
    msg = _one_line(e)
    assert "step 40 is unreadable" in msg and "step 20 is unreadable" in msg
    ckpts.close()


def test_another_process_count_is_a_mismatch_not_damage(tmp_path):
    ckpts = ckpt_lib.RunCheckpoints(tmp_path)
    ckpts.save("latest", 2, _state(0), {"pos": 2}, {})
    ckpts.wait()
    d = tmp_path / "checkpoints" / "latest" / "2" / "data_iter"
    (d / "process_0-of-1.json").rename(d / "process_0-of-2.json")  # as if written by 2 processes
    with pytest.raises(ckpt_lib.CheckpointMismatchError, match="saved by 2 JAX process") as e:
        ckpts.restore_latest_good("latest", _state(1))
    _one_line(e)
    (d / "process_0-of-2.json").unlink()  # no iterator state at all: damage
    with pytest.raises(ckpt_lib.CheckpointUnreadableError, match="no data-iterator state"):
        ckpts.restore_latest_good("latest", _state(1))
    ckpts.close()


def test_fallback_restore_of_an_intact_run_and_of_an_empty_one(tmp_path):
    ckpts = ckpt_lib.RunCheckpoints(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        ckpts.restore_latest_good("latest", _state(0))
    ckpts.save("latest", 3, _state(0), {"pos": 3}, {})
    ckpts.wait()
    step, _, it, _, skipped = ckpts.restore_latest_good("latest", _state(1))
    assert (step, it, skipped) == (3, {"pos": 3}, [])
    ckpts.close()
