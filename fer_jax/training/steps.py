"""The jitted train and eval steps (pure functions of the state pytree, jitted once each).

``train_step(state, batch) -> (state, metrics)`` is jitted with the state donated; batches are sharded on
the mesh's ``'data'`` axis and the state is replicated, so XLA inserts the gradient all-reduce. Gradient
accumulation is ``optax.MultiSteps`` (one call per micro-batch); the EMA moves only on steps where the
optimizer applied an update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from fer_jax.training import ema as ema_lib
from fer_jax.training import mesh as mesh_lib
from fer_jax.training.evaluation import BATCH_KEYS
from fer_jax.training.state import ModelDefs

LossFn = Callable[[jax.Array, jax.Array], jax.Array]  # (logits (B, C), labels (B,)) -> (B,)


def _masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(x)
    m = mask.astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def make_train_step(
    defs: ModelDefs,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    loss_fn: LossFn,
    input_names: Sequence[str],
    *,
    ema_decay: float = 0.0,
    grad_accum_steps: int = 1,
    normalize: Callable[[dict], dict] | None = None,
) -> Callable:
    """Returns the un-jitted ``train_step(state, batch) -> (state, metrics)``.

    ``normalize``: ``batch -> batch`` applied first, inside the step (``device_input.DeviceNormalize``:
    uint8 frames to float32 model inputs); None when the host normalised the batch.

    metrics: scalars ``loss`` (task + aux), ``task_loss``, ``aux_loss``, ``accuracy``, ``grad_norm``, ``lr``.
    """
    input_names = tuple(input_names)
    accum = max(int(grad_accum_steps), 1)

    def train_step(state: dict, batch: dict) -> tuple[dict, dict]:
        if normalize is not None:
            batch = normalize(batch)
        mask = batch.get("mask")

        def loss_of(params, rest):
            # copy=True: fresh Variables at the grad trace level, so BatchNorm may write its statistics
            model = nnx.merge(defs.train, params, rest, copy=True)
            out = model(**{k: batch[k] for k in input_names})
            logits = out["logits"].astype(jnp.float32)
            # the AU re-weighting (losses.loss_from_config, loss.au_reweight > 0) reads the clip's landmarks
            extra = {"landmarks": batch.get("landmarks")} if getattr(loss_fn, "uses_landmarks", False) else {}
            task = _masked_mean(loss_fn(logits, batch["label"], **extra), mask)
            aux = jnp.asarray(out.get("aux_loss", 0.0), jnp.float32)
            _, _, new_rest = nnx.split(model, nnx.Param, ...)
            return task + aux, (new_rest, logits, task, aux)

        (loss, (new_rest, logits, task, aux)), grads = jax.value_and_grad(loss_of, has_aux=True)(
            state["params"], state["rest"]
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        step = state["step"]
        opt_step = step // accum
        new_state = {"step": step + 1, "params": params, "rest": new_rest, "opt_state": opt_state}
        if state.get("ema") is not None:
            applied = (step + 1) % accum == 0
            decay = jnp.where(applied, ema_lib.ema_decay_at(ema_decay, opt_step), 1.0)
            new_state["ema"] = ema_lib.ema_update(state["ema"], params, decay)
        else:
            new_state["ema"] = None
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        metrics = {
            "loss": loss,
            "task_loss": task,
            "aux_loss": aux,
            "accuracy": _masked_mean(correct, mask),
            "grad_norm": optax.tree.norm(grads),
            "lr": jnp.asarray(schedule(opt_step), jnp.float32),
        }
        return new_state, metrics

    return train_step


def make_eval_step(
    defs: ModelDefs, input_names: Sequence[str], normalize: Callable[[dict], dict] | None = None
) -> Callable:
    """Returns ``eval_step(params, rest, batch) -> outputs``: ``probs`` (B, C), ``pred`` (B,), the batch's
    ``BATCH_KEYS`` (``label``/``mask``/``lighting``/``index``) passed through, and ``stats/<name>`` for
    the model's stats. ``normalize`` as in :func:`make_train_step`."""
    input_names = tuple(input_names)

    def eval_step(params, rest, batch):
        if normalize is not None:
            batch = normalize(batch)
        model = nnx.merge(defs.eval, params, rest)
        out = model(**{k: batch[k] for k in input_names})
        logits = out["logits"].astype(jnp.float32)
        res = {"probs": jax.nn.softmax(logits, -1), "pred": jnp.argmax(logits, -1).astype(jnp.int32)}
        for k in BATCH_KEYS:
            if k in batch:
                res[k] = batch[k]
        for k, v in (out.get("stats") or {}).items():
            res[f"stats/{k}"] = v
        return res

    return eval_step


def jit_train_step(train_step: Callable, mesh: Mesh) -> Callable:
    """``jax.jit`` with the state donated; state and metrics pinned replicated on output."""
    return jax.jit(train_step, donate_argnums=0, out_shardings=mesh_lib.replicated(mesh))


def jit_eval_step(eval_step: Callable, mesh: Mesh) -> Callable:
    """Outputs replicated so every process can read the whole batch (gathered across hosts)."""
    return jax.jit(eval_step, out_shardings=mesh_lib.replicated(mesh))
