"""Optimizer and learning-rate schedules from ``config.optim`` / ``config.train``.

AdamW with a weight-decay mask (no decay on normalisation parameters, biases and the SSM's ``A_log`` /
``D``, as in the public Mamba code), global-norm clipping, and gradient accumulation through
``optax.MultiSteps``. Schedules are functions of the *optimizer* step (one per applied update):

- ``onecycle``: PyTorch ``OneCycleLR`` (cosine annealing, two phases, ``div_factor=25``,
  ``final_div_factor=1e4``), step-exact with PyTorch's formula (``optax.cosine_onecycle_schedule`` puts
  the peak one step later); with ``optim.cycle_momentum`` also its momentum cycling, Adam's beta1 from
  0.95 down to 0.85 at the lr peak and back to 0.95 (``onecycle_momentum_schedule``, PyTorch's
  ``cycle_momentum=True`` default);
- ``step``: ``StepLR(step_size=1 epoch, gamma)``, the official MCO-E Net code;
- ``cosine``: cosine decay to 0 over the run; ``constant``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# Leaf names that never get weight decay whatever their rank: the SSM's A_log / A_b_log (2-d; D / D_b are
# 1-d), as mamba_simple's ``_no_weight_decay``; every bias and norm scale, also a converted 2-d one.
NO_DECAY_NAMES = frozenset({"bias", "scale", "A_log", "A_b_log", "D", "D_b"})


def _two_phase_cos(
    total_steps: int, pct_start: float, start: float, mid: float, end: float
) -> optax.Schedule:
    """PyTorch ``OneCycleLR``'s two cosine phases: ``start`` at step 0, ``mid`` at step
    ``pct_start * total - 1``, ``end`` at step ``total - 1`` (the same step fractions for lr and momentum)."""
    if total_steps < 1:
        raise ValueError(f"onecycle needs total_steps >= 1, got {total_steps}")
    peak_step = float(pct_start * total_steps) - 1.0
    end_step = float(total_steps - 1)

    def cos_anneal(a, b, pct):
        return b + (a - b) / 2.0 * (jnp.cos(math.pi * pct) + 1.0)

    def schedule(count):
        step = jnp.asarray(count, jnp.float32)
        pct_up = jnp.clip(step / jnp.maximum(peak_step, 1e-9), 0.0, 1.0)
        pct_down = jnp.clip((step - peak_step) / jnp.maximum(end_step - peak_step, 1e-9), 0.0, 1.0)
        return jnp.where(step <= peak_step, cos_anneal(start, mid, pct_up), cos_anneal(mid, end, pct_down))

    return schedule


def onecycle_schedule(
    total_steps: int,
    max_lr: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> optax.Schedule:
    """PyTorch ``OneCycleLR(anneal_strategy='cos', three_phase=False)`` as an optax schedule.

    lr rises from ``max_lr / div_factor`` at step 0 to ``max_lr`` at step ``pct_start * total - 1`` and
    falls to ``max_lr / div_factor / final_div_factor`` at step ``total - 1``.
    """
    initial = max_lr / div_factor
    return _two_phase_cos(total_steps, pct_start, initial, max_lr, initial / final_div_factor)


def onecycle_momentum_schedule(
    total_steps: int, pct_start: float = 0.3, base_momentum: float = 0.85, max_momentum: float = 0.95
) -> optax.Schedule:
    """PyTorch ``OneCycleLR(cycle_momentum=True)``'s momentum (Adam's beta1): ``max_momentum`` at step 0,
    ``base_momentum`` at the lr peak, ``max_momentum`` again at the last step; inverse to the lr."""
    return _two_phase_cos(total_steps, pct_start, max_momentum, base_momentum, max_momentum)


def make_schedule(config, *, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
    """The learning-rate schedule of ``config.optim`` over ``total_steps`` optimizer updates."""
    o = config.optim
    name = o.schedule
    if name == "onecycle":
        return onecycle_schedule(total_steps, o.lr, pct_start=o.pct_start)
    if name == "step":
        epoch_len = max(int(steps_per_epoch), 1)
        gamma = float(o.step_gamma)
        return lambda count: o.lr * gamma ** (jnp.asarray(count) // epoch_len).astype(jnp.float32)
    if name == "cosine":
        return optax.cosine_decay_schedule(o.lr, max(total_steps, 1))
    if name == "constant":
        return optax.constant_schedule(o.lr)
    raise ValueError(f"unknown optim.schedule {name!r}; known: onecycle, step, cosine, constant")


def _path_names(path: tuple) -> list[str]:
    names = []
    for k in path:
        for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
    return names


def decay_mask(params: Any) -> Any:
    """Pytree of bools shaped like ``params`` (an ``nnx.State`` of Params or a plain dict): True where
    weight decay applies.

    The one no-decay rule, decided from each leaf's tree path and rank: no decay on 0-/1-d leaves (biases,
    norm scales, the SSM's ``D``), on leaves named in ``NO_DECAY_NAMES`` and on anything under a module
    whose name contains ``norm``.
    """

    def decide(path: tuple, leaf: Any) -> bool:
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        names = _path_names(path)
        if jnp.ndim(value) < 2:
            return False
        if names and names[-1] in NO_DECAY_NAMES:
            return False
        return not any("norm" in n.lower() for n in names[:-1])

    return jax.tree.map_with_path(decide, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def make_optimizer(config, params: Any, *, total_steps: int, steps_per_epoch: int):
    """Returns ``(tx, schedule)``: the optax transformation for ``params`` and its lr schedule.

    ``total_steps`` and ``steps_per_epoch`` count optimizer updates (after accumulation).
    """
    o = config.optim
    schedule = make_schedule(config, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    # beta1 as a schedule of the optimizer step (PyTorch OneCycleLR's cycle_momentum); a float otherwise.
    # inject_hyperparams re-reads it each update, and Adam's bias correction then uses the current beta1,
    # as torch.optim.Adam does (1 - beta1_t ** t).
    cycle = bool(o.get("cycle_momentum", False))
    if cycle and (o.schedule != "onecycle" or o.name not in ("adam", "adamw")):
        raise ValueError(
            f"optim.cycle_momentum needs schedule 'onecycle' and adam/adamw, got {o.schedule!r} / {o.name!r}"
        )
    b1 = onecycle_momentum_schedule(total_steps, o.pct_start) if cycle else 0.9
    if o.name == "adamw":
        if cycle:
            opt = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
                learning_rate=schedule, b1=b1, weight_decay=o.weight_decay, mask=decay_mask(params)
            )
        else:
            opt = optax.adamw(schedule, weight_decay=o.weight_decay, mask=decay_mask(params))
    elif o.name == "adam":
        opt = (
            optax.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=b1)
            if cycle
            else optax.adam(schedule)
        )
    elif o.name == "sgd":
        opt = optax.sgd(schedule, momentum=o.get("momentum", 0.9))
    else:
        raise ValueError(f"unknown optim.name {o.name!r}; known: adamw, adam, sgd")
    chain = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip and o.grad_clip > 0 else []
    tx = optax.chain(*chain, opt)
    accum = int(config.train.grad_accum_steps)
    if accum > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accum)
    return tx, schedule
