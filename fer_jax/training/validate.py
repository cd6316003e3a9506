"""Range checks of a training config at start-up, before anything is built or written.

A value out of range must stop the run with one line naming the field, not train silently wrong: a
negative learning rate trains by gradient ascent, a negative step count "finishes" at step 0, a batch
size of 0 fails deep inside the pipeline. :func:`check_config` raises ``ValueError`` naming the first
field that is out of range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_collections

# (dotted field, test, what the field must be); fields absent from a config are not checked
_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("train.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("eval.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("train.num_steps", lambda v: v >= 0, "an integer >= 0 (0: num_epochs decides)"),
    ("train.num_epochs", lambda v: v >= 0, "an integer >= 0"),
    ("train.eval_every_steps", lambda v: v >= 0, "an integer >= 0 (0: once per epoch)"),
    ("train.checkpoint_every_steps", lambda v: v >= 0, "an integer >= 0 (0: at each evaluation)"),
    ("train.log_every_steps", lambda v: v >= 1, "an integer >= 1"),
    ("train.keep_checkpoints", lambda v: v >= 1, "an integer >= 1"),
    ("train.early_stopping_patience", lambda v: v >= 0, "an integer >= 0 (0 disables)"),
    ("train.grad_accum_steps", lambda v: v >= 1, "an integer >= 1"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "in [0, 1) (0 disables EMA)"),
    ("optim.lr", lambda v: v > 0, "> 0"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optim.grad_clip", lambda v: v >= 0, ">= 0 (0 disables)"),
    ("optim.pct_start", lambda v: 0 < v < 1, "in (0, 1)"),
    ("optim.step_gamma", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("loss.gamma", lambda v: v >= 0, ">= 0"),
    ("loss.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("eval.passes", lambda v: v >= 1, "an integer >= 1"),
    ("data.num_frames", lambda v: v >= 1, "an integer >= 1"),
    ("data.image_size", lambda v: v >= 1, "an integer >= 1"),
    ("data.num_workers", lambda v: v >= 0, "an integer >= 0"),
)
_INTEGER_SUFFIXES = ("batch_size", "steps", "epochs", "patience", "checkpoints", "passes", "frames", "size",
                     "workers")  # fmt: skip


def _get(config: ml_collections.ConfigDict, dotted: str) -> tuple[bool, Any]:
    node: Any = config
    for part in dotted.split("."):
        if not hasattr(node, "get") or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` (one line, naming the field and its value) on the first out-of-range value."""
    for field, ok, must in _RULES:
        present, value = _get(config, field)
        if not present or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config.{field}={value!r} must be a number, {must}")
        if not math.isfinite(value):
            raise ValueError(f"config.{field}={value!r} must be finite, {must}")
        if field.endswith(_INTEGER_SUFFIXES) and value != int(value):
            raise ValueError(f"config.{field}={value!r} must be {must}")
        if not ok(value):
            raise ValueError(f"config.{field}={value!r} must be {must}")
    present, stored = _get(config, "data.stored_frames")
    _, used = _get(config, "data.num_frames")
    if present and stored and used and int(used) > int(stored):
        raise ValueError(f"config.data.num_frames={used} exceeds config.data.stored_frames={stored}")
