"""Range checks of a training config at start-up, before anything is built or written.

A value out of range must stop the run with one line naming the field, not train silently wrong: a
negative learning rate trains by gradient ascent, a negative step count "finishes" at step 0, a batch
size of 0 fails deep inside the pipeline. :func:`check_config` raises ``ValueError`` naming the first
field that is out of range.

It also refuses two start-up mistakes that would otherwise train for days "fine": a paper config
(``train.require_weights``) whose ``model.backbone_weights`` was left empty (random weights by accident; the
value ``none`` chooses random initialisation on purpose), and a JAX backend other than
``train.expect_platform`` (a TPU or GPU run silently falling back to the CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_collections

# (dotted field, integer?, test, what the field must be); fields absent from a config are not checked
_RULES: tuple[tuple[str, bool, Callable[[Any], bool], str], ...] = (
    ("train.batch_size", True, lambda v: v >= 1, "an integer >= 1"),
    ("eval.batch_size", True, lambda v: v >= 1, "an integer >= 1"),
    ("train.num_steps", True, lambda v: v >= 0, "an integer >= 0 (0: num_epochs decides)"),
    ("train.num_epochs", True, lambda v: v >= 0, "an integer >= 0 (0 with num_steps 0: a zero-step run)"),
    ("train.eval_every_steps", True, lambda v: v >= 0, "an integer >= 0 (0: once per epoch)"),
    ("train.checkpoint_every_steps", True, lambda v: v >= 0, "an integer >= 0 (0: at each evaluation)"),
    ("train.log_every_steps", True, lambda v: v >= 1, "an integer >= 1"),
    ("train.keep_checkpoints", True, lambda v: v >= 1, "an integer >= 1"),
    ("train.early_stopping_patience", True, lambda v: v >= 0, "an integer >= 0 (0 disables)"),
    ("train.grad_accum_steps", True, lambda v: v >= 1, "an integer >= 1"),
    ("train.ema_decay", False, lambda v: 0 <= v < 1, "in [0, 1) (0 disables EMA)"),
    ("train.prefetch_batches", True, lambda v: v >= 0, "an integer >= 0 (0: no look-ahead)"),
    ("train.stop_check_every_steps", True, lambda v: v >= 1, "an integer >= 1"),
    ("optim.lr", False, lambda v: v > 0, "> 0"),
    ("optim.weight_decay", False, lambda v: v >= 0, ">= 0"),
    ("optim.grad_clip", False, lambda v: v >= 0, ">= 0 (0 disables)"),
    ("optim.pct_start", False, lambda v: 0 < v < 1, "in (0, 1)"),
    ("optim.step_gamma", False, lambda v: 0 < v <= 1, "in (0, 1]"),
    ("loss.gamma", False, lambda v: v >= 0, ">= 0"),
    ("loss.label_smoothing", False, lambda v: 0 <= v < 1, "in [0, 1)"),
    ("eval.passes", True, lambda v: v >= 1, "an integer >= 1"),
    ("data.num_frames", True, lambda v: v >= 1, "an integer >= 1"),
    ("data.image_size", True, lambda v: v >= 1, "an integer >= 1"),
    ("data.num_workers", True, lambda v: v >= 0, "an integer >= 0"),
)


def _get(config: ml_collections.ConfigDict, dotted: str) -> tuple[bool, Any]:
    node: Any = config
    for part in dotted.split("."):
        if not hasattr(node, "get") or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` (one line, naming the field and its value) on the first out-of-range value, on
    missing weights of a paper config (:func:`check_weights`) and on another backend than the expected one
    (:func:`check_platform`)."""
    for field, integer, ok, must in _RULES:
        present, value = _get(config, field)
        if not present or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config.{field}={value!r} must be a number, {must}")
        if not math.isfinite(value):
            raise ValueError(f"config.{field}={value!r} must be finite, {must}")
        if integer and value != int(value):
            raise ValueError(f"config.{field}={value!r} must be {must}")
        if not ok(value):
            raise ValueError(f"config.{field}={value!r} must be {must}")
    present, stored = _get(config, "data.stored_frames")
    _, used = _get(config, "data.num_frames")
    if present and stored and used and int(used) > int(stored):
        raise ValueError(f"config.data.num_frames={used} exceeds config.data.stored_frames={stored}")
    check_weights(config)
    check_platform(config)


_PLATFORMS = ("cpu", "gpu", "tpu")


def check_weights(config: ml_collections.ConfigDict) -> None:
    """With ``train.require_weights``, raises ``ValueError`` (one line naming the flag) when a backbone would
    start from random weights because its ``*backbone_weights`` setting is empty. ``none`` (any case) is the
    explicit choice of random initialisation; MCO-E Net's ``rgb_`` / ``event_backbone_weights`` fall back to
    ``backbone_weights`` per branch, as the model does; a whole converted model (``model.weights``) needs
    none."""
    _, required = _get(config, "train.require_weights")
    _, whole = _get(config, "model.weights")  # MCO-E Net: a whole converted model replaces the backbones'
    if not required or str(whole or "").strip().lower() not in ("", "none"):
        return
    _, base = _get(config, "model.backbone_weights")
    base = str(base or "").strip()
    empty = []
    branches = [b for b in ("rgb", "event") if _get(config, f"model.{b}_backbone_weights")[0]]
    if branches:
        for b in branches:
            own = str(_get(config, f"model.{b}_backbone_weights")[1] or "").strip()
            if not (own or base):
                empty.append(f"{b} branch")
    elif not base:
        empty.append("backbone")
    if empty:
        raise ValueError(
            f"config.model.backbone_weights is empty ({' and '.join(empty)}): this paper config starts "
            "from ImageNet weights; pass --config.model.backbone_weights=DIR (written by python -m "
            "fer_jax.convert, docs/reproduce.md) or --config.model.backbone_weights=none to train from "
            "random initialisation on purpose"
        )


def check_platform(config: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` (one line) when ``train.expect_platform`` is set ("cpu" | "gpu" | "tpu";
    "" = any) and JAX's default backend is another one."""
    _, expected = _get(config, "train.expect_platform")
    expected = str(expected or "").strip().lower()
    if not expected:
        return
    if expected not in _PLATFORMS:
        raise ValueError(
            f"config.train.expect_platform={expected!r} must be '' (any) or one of {', '.join(_PLATFORMS)}"
        )
    import jax  # here, not at import: the range checks above need no backend

    actual = jax.default_backend()
    if actual != expected:
        device = jax.devices()[0]
        raise ValueError(
            f"config.train.expect_platform={expected!r} but JAX runs on {actual} ({jax.device_count()} "
            f"{device.device_kind} device(s)): check the runtime type and that no other process holds the "
            f"accelerator, or pass --config.train.expect_platform='' to run on {actual}"
        )
