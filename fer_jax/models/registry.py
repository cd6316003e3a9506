"""Model registry: config.model.name -> the NNX model and the inputs it takes.

Every model module exposes functions that the registry looks up lazily (so importing the registry
does not import every model):

- ``model_config(config)``: ``config.model`` as the model's frozen settings dataclass
  (``fer_jax.models.config.from_config_dict``; an unknown key is a one-line ValueError);
- ``from_config(config, *, rngs) -> nnx.Module`` building the model described by ``config.model``; it
  reads no file (no weights are loaded during construction, so it can run under ``nnx.eval_shape`` /
  ``jax.jit``);
- ``pretrained_targets(model, config) -> [(submodule, weights_dir)]``: where the caller (the Run, on a
  fresh start) loads converted backbone weights with ``fer_jax.convert.load_backbone_into``;
- ``input_spec(config) -> {input_name: (shape, dtype)}``: the keyword inputs of the model's
  ``__call__`` for ONE example (no batch axis).

Calling contract shared by all models: ``model(**inputs) -> dict`` with ``"logits"`` ``(batch,
num_classes)`` float32, optionally ``"aux_loss"`` (a scalar already weighted, added to the task loss by
the trainer) and ``"stats"`` (a dict of arrays for logging, e.g. expert usage). ``model.train()`` /
``model.eval()`` switch BatchNorm and dropout.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
from flax import nnx

# name -> module that defines from_config / input_spec for it
_MODULES: dict[str, str] = {
    "mambafer": "fer_jax.models.mambafer",
    "mco_e_net": "fer_jax.models.mco_e_net",
    "mco_e_net_reference": "fer_jax.models.mco_e_net_reference",
    "resnet18_lstm": "fer_jax.models.baselines",
    "resnet18_gru": "fer_jax.models.baselines",
    "resnet3d_18": "fer_jax.models.r3d",
    "r2plus1d_18": "fer_jax.models.r3d",
    "r3d_18": "fer_jax.models.r3d",
    "former_dfer": "fer_jax.models.former_dfer",
}

InputSpec = dict[str, tuple[tuple[int, ...], Any]]
Targets = list[tuple[nnx.Module, str]]


def _no_targets(model: nnx.Module, config: Any) -> Targets:
    del model, config
    return []


# Entries added at run time (tests, user extensions): name -> (builder, spec, targets)
_EXTRA: dict[str, tuple[Callable[..., nnx.Module], Callable[[Any], InputSpec], Callable[..., Targets]]] = {}


def register(
    name: str,
    builder: Callable[..., nnx.Module],
    spec: Callable[[Any], InputSpec],
    targets: Callable[[nnx.Module, Any], Targets] | None = None,
) -> None:
    """Registers a model under ``name`` (``builder(config, *, rngs)``, ``spec(config)``, optionally
    ``targets(model, config)`` as :func:`pretrained_targets`; default: no pretrained weights)."""
    _EXTRA[name] = (builder, spec, targets or _no_targets)


def names() -> list[str]:
    """All registered model names."""
    return sorted(set(_MODULES) | set(_EXTRA))


def _lookup(
    name: str,
) -> tuple[Callable[..., nnx.Module], Callable[[Any], InputSpec], Callable[[nnx.Module, Any], Targets]]:
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _MODULES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(names())}")
    module = importlib.import_module(_MODULES[name])
    return module.from_config, module.input_spec, module.pretrained_targets


def build(config, *, rngs: nnx.Rngs) -> nnx.Module:
    """Returns the NNX model that ``config.model`` describes (randomly initialised; reads no file)."""
    builder, _, _ = _lookup(config.model.name)
    return builder(config, rngs=rngs)


def input_spec(config) -> InputSpec:
    """Maps each keyword input of the model to ``(shape, dtype)`` of one example (no batch axis)."""
    _, spec, _ = _lookup(config.model.name)
    return spec(config)


def pretrained_targets(model: nnx.Module, config) -> Targets:
    """The ``(submodule, weights directory)`` pairs to fill from ``config.model.backbone_weights`` (and,
    for MCO-E Net, ``rgb_`` / ``event_backbone_weights``): pure, no I/O; ``[]`` when the config names no
    weights ("" / "none"). The caller loads each with ``fer_jax.convert.load_backbone_into(submodule,
    directory)``; ``model`` must be the one ``build(config)`` returned (it may be abstract)."""
    _, _, targets = _lookup(config.model.name)
    return targets(model, config)


def dummy_inputs(config, batch_size: int = 1) -> dict[str, np.ndarray]:
    """Zero-filled inputs with a leading batch axis, for shape checks, FLOPs counts and warm-up."""
    return {
        k: np.zeros((batch_size, *shape), dtype=dtype) for k, (shape, dtype) in input_spec(config).items()
    }
