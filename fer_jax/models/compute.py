"""How every model computes, not what: compute / parameter dtype, rematerialisation, backend choices.

:class:`ComputeConfig` is the base of every model's settings dataclass, so each model takes the same four
keys in ``config.model`` (defaults here, the one place they live):

- ``dtype`` (``"float32"`` | ``"bfloat16"``): the compute dtype. Parameters are cast to it at the top of
  the forward pass (:func:`forward`, the usual mixed-precision policy: float32 master weights, gradients
  flow back through the cast); the selective scan, softmax, normalisation statistics and the MoE router
  cast up to float32 where they compute; every model returns float32 logits, so the loss is float32.
- ``param_dtype`` (``"float32"`` | ``"bfloat16"``): the dtype parameters are stored (and optimised) in.
- ``remat`` (``"none"`` | ``"blocks"`` | a policy name of ``jax.checkpoint_policies`` such as
  ``"dots_with_no_batch_dims_saveable"``): ``nnx.remat`` around each backbone stage and each Mamba /
  transformer block (:func:`run_blocks`); ``"blocks"`` saves nothing inside a block (recompute all).
- ``depthwise_impl`` (``"auto"`` | ``"shifted"`` | ``"grouped"``): how depthwise convolutions compute
  (``fer_jax.models.layers.DepthwiseConv``); ``"auto"`` = shifted multiplies on CPU, a
  ``feature_group_count`` convolution on GPU / TPU.

:func:`configure` applies them at the end of each model's constructor. At the defaults nothing changes:
no cast, no remat, and the depthwise form CPU used before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DEPTHWISE_IMPLS = ("auto", "shifted", "grouped")
# the policies that are policies as they stand (the others in jax.checkpoint_policies are factories)
REMAT_POLICIES = (
    "everything_saveable",
    "nothing_saveable",
    "dots_saveable",
    "checkpoint_dots",
    "dots_with_no_batch_dims_saveable",
    "checkpoint_dots_with_no_batch_dims",
)
REMAT_MODES = ("none", "blocks", *REMAT_POLICIES)


@dataclasses.dataclass(frozen=True)
class ComputeConfig:
    """The compute settings every model config inherits (see module docstring); checked on creation."""

    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    depthwise_impl: str = "auto"

    def __post_init__(self) -> None:
        check(self)


def check(cfg: ComputeConfig) -> None:
    """ValueError in one line naming the first bad compute setting."""
    for key, allowed in (
        ("dtype", tuple(DTYPES)),
        ("param_dtype", tuple(DTYPES)),
        ("remat", REMAT_MODES),
        ("depthwise_impl", DEPTHWISE_IMPLS),
    ):
        value = getattr(cfg, key)
        if value not in allowed:
            raise ValueError(f"model.{key} must be one of {', '.join(allowed)}; got {value!r}")


def remat_policy(remat: str) -> Callable[..., bool] | None:
    """The ``jax.checkpoint`` policy of a ``remat`` setting (None: save nothing, for ``"blocks"``)."""
    if remat not in REMAT_MODES or remat == "none":
        raise ValueError(f"remat must be one of {', '.join(REMAT_MODES[1:])}; got {remat!r}")
    return None if remat == "blocks" else getattr(jax.checkpoint_policies, remat)


def _call_blocks(blocks: Sequence[nnx.Module], x: jax.Array) -> jax.Array:
    for block in blocks:
        x = block(x)
    return x


def _call(module: nnx.Module, *args: Any) -> Any:
    return module(*args)


def call(module: nnx.Module, *args: Any, remat: str = "none") -> Any:
    """``module(*args)``, under ``nnx.remat`` unless ``remat == "none"`` (then its activations are
    recomputed in the backward pass; only its inputs are kept)."""
    if remat == "none":
        return module(*args)
    return nnx.remat(_call, policy=remat_policy(remat))(module, *args)


def run_blocks(blocks: Sequence[nnx.Module], x: jax.Array, remat: str = "none") -> jax.Array:
    """``x`` through ``blocks`` in order; with ``remat`` != "none" the whole sequence is one
    ``nnx.remat`` (see :func:`call`).

    Pass a stage (an ``nnx.List``) for stage granularity, ``[block]`` for block granularity.
    """
    if remat == "none":
        return _call_blocks(blocks, x)
    group = blocks if isinstance(blocks, nnx.List) else nnx.List(list(blocks))
    return nnx.remat(_call_blocks, policy=remat_policy(remat))(group, x)


def _cast_floating(tree: Any, dtype: Any) -> Any:
    def cast(a):
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != dtype else a

    return jax.tree.map(cast, tree)


def forward(module: nnx.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(module, *args)`` computed in ``module.compute_dtype``.

    float32 with float32 parameters (the default): exactly ``fn(module, *args)``. Otherwise ``fn`` runs on
    a copy of ``module`` whose floating parameters are cast to the compute dtype, with the floating
    ``args`` cast too (models cast landmark coordinates back up where they use them); the copy's other
    state (BatchNorm statistics, RNG counts) is written back to ``module``. Gradients reach the stored
    parameters through the cast.
    """
    dtype = DTYPES[getattr(module, "compute_dtype", "float32")]
    params = nnx.state(module, nnx.Param)
    if dtype == jnp.float32 and all(  # the cheap test first: a bfloat16 compute never walks the leaves
        a.dtype == dtype or not jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(params)
    ):
        return fn(module, *args)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    copy = nnx.merge(graphdef, _cast_floating(params, dtype), rest)
    args = tuple(_cast_floating(a, dtype) for a in args)
    out = fn(copy, *args)
    nnx.update(module, nnx.state(copy, nnx.Not(nnx.Param)))
    return out


def f32_softmax_attention(query: jax.Array, key: jax.Array, value: jax.Array, **kwargs: Any) -> jax.Array:
    """``nnx.dot_product_attention`` with the logits and softmax in float32 whatever the inputs' dtype;
    the output in ``value.dtype``. Identical to the default at float32."""
    if query.dtype == jnp.float32 and key.dtype == jnp.float32:
        return nnx.dot_product_attention(query, key, value, **kwargs)
    kwargs.pop("dtype", None)
    out = nnx.dot_product_attention(
        query.astype(jnp.float32), key.astype(jnp.float32), value.astype(jnp.float32), **kwargs
    )
    return out.astype(value.dtype)


def configure(model: nnx.Module, cfg: ComputeConfig) -> None:
    """Applies ``cfg`` to a freshly built ``model``: stores parameters in ``param_dtype``, sets
    ``model.compute_dtype`` (read by :func:`forward`), ``remat`` on every module that has the setting
    (backbones, Mamba and transformer stacks) and ``impl`` on every depthwise convolution."""
    from fer_jax.models.layers import DepthwiseConv  # layers imports nothing from here; avoids a cycle

    check(cfg)
    model.compute_dtype = cfg.dtype
    for _, m in nnx.iter_modules(model):
        if isinstance(m, DepthwiseConv):
            m.impl = cfg.depthwise_impl
        if hasattr(m, "remat") and isinstance(m.remat, str):
            m.remat = cfg.remat
    if cfg.param_dtype != "float32":
        params = nnx.state(model, nnx.Param)
        nnx.update(model, _cast_floating(params, DTYPES[cfg.param_dtype]))
