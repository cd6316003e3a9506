"""The train state as a plain pytree, plus the two static graph definitions of the model.

``nnx.split(model, nnx.Param, ...)`` separates the parameters from the rest (BatchNorm statistics, the
dropout RNG key and counter). The train and eval graph definitions differ only in the modules' mode
flags (``model.train()`` / ``model.eval()``), so ONE state serves both jitted functions and no NNX graph
traversal happens per step. The state dict::

    {"step": int32 (), "params": nnx.State, "rest": nnx.State, "opt_state": optax state,
     "ema": nnx.State (params' structure) or None}
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ModelDefs:
    """Static halves of the model: ``train`` / ``eval`` graph definitions (hashable, jit-static)."""

    train: Any
    eval: Any


def split_model(model: nnx.Module) -> tuple[ModelDefs, Any, Any]:
    """Returns ``(defs, params, rest)``; leaves ``model`` in eval mode."""
    model.train()
    g_train, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    g_eval, _, _ = nnx.split(model, nnx.Param, ...)
    return ModelDefs(g_train, g_eval), params, rest


def initial_state(params: Any, rest: Any, tx: optax.GradientTransformation, *, ema: bool) -> dict:
    """The state dict of step 0 (pure: call it under ``jax.jit``): optimizer state from ``params``, the EMA
    a copy of them (None without ``ema``)."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "rest": rest,
        "opt_state": tx.init(params),
        "ema": jax.tree.map(jnp.copy, params) if ema else None,
    }


def create_state(model: nnx.Module, tx: optax.GradientTransformation, *, ema: bool) -> tuple[ModelDefs, dict]:
    """Builds the initial train state of an existing model (default-device arrays; ``Run`` builds its
    replicated state in one jitted function instead, ``run.build_model_and_state``)."""
    defs, params, rest = split_model(model)
    # jitted: one compilation instead of one per optimizer-state leaf
    return defs, jax.jit(lambda p, r: initial_state(p, r, tx, ema=ema))(params, rest)


def eval_params(state: dict) -> Any:
    """The parameters evaluation uses: the EMA when kept, the raw parameters otherwise."""
    return state["ema"] if state.get("ema") is not None else state["params"]


def num_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
