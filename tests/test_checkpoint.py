"""fer_jax.training.checkpoint: the train state, iterator position and metadata survive a round trip."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fer_jax.training import checkpoint as ckpt_lib
from fer_jax.training import state as state_lib


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.fc = nnx.Linear(3, 2, rngs=rngs)
        self.bn = nnx.BatchNorm(2, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)


def _state(seed, ema=True):
    model = _Net(nnx.Rngs(seed, dropout=seed + 7))
    _, state = state_lib.create_state(model, optax.adamw(1e-3), ema=ema)
    # make every part non-trivial so a wrong mapping would show
    state = jax.tree.map(lambda x: x + 0.5 if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
    state["step"] = jnp.asarray(5 + seed, jnp.int32)
    return state


def _keyless(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if ckpt_lib._is_key(x) else x, tree)


@pytest.mark.parametrize("iter_state", [b'{"pos": 3}', {"pos": [1, 2]}])
def test_round_trip(tmp_path, iter_state):
    saved = _state(0)
    ckpts = ckpt_lib.RunCheckpoints(tmp_path, keep=2)
    ckpts.save("latest", 5, saved, iter_state, {"early_stopping": {"best": 0.5}, "status": "running"})
    ckpts.wait()
    target = _state(1)  # different values, same structure
    restored, it, meta = ckpts.restore("latest", 5, target)
    ckpts.close()
    chex.assert_trees_all_equal(_keyless(restored), _keyless(saved))
    assert jax.tree.structure(restored) == jax.tree.structure(saved)
    assert any(ckpt_lib._is_key(x) for x in jax.tree.leaves(restored))  # the dropout key is a key again
    assert it == iter_state
    assert meta["early_stopping"]["best"] == 0.5


def test_keeps_latest_n_and_overwrites_a_step(tmp_path):
    s = _state(0)
    ckpts = ckpt_lib.RunCheckpoints(tmp_path, keep=2)
    for step in (1, 2, 3):
        ckpts.save("latest", step, s, {}, {"status": "running"})
    ckpts.save("latest", 3, s, {}, {"status": "interrupted"})  # same step again (SIGTERM right after a save)
    ckpts.wait()
    assert sorted(ckpts.steps("latest")) == [2, 3]
    assert ckpts.restore_meta("latest", 3)["status"] == "interrupted"
    ckpts.close()


def test_mismatched_model_is_refused(tmp_path):
    ckpts = ckpt_lib.RunCheckpoints(tmp_path)
    ckpts.save("latest", 1, _state(0, ema=True), {}, {})
    ckpts.wait()
    with pytest.raises(ValueError, match="does not match"):
        ckpts.restore("latest", 1, _state(0, ema=False))
    ckpts.close()


def test_flatten_names_are_unique_and_readable():
    flat = ckpt_lib.flatten_state(_state(0))
    assert len(flat) == len(jax.tree.leaves(_state(0)))
    assert any(k.endswith("params.fc.kernel") for k in flat)
    assert all(isinstance(v, jax.Array | np.ndarray) for v in flat.values())
