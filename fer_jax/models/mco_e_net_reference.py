"""MCO-E Net as the authors' public code builds it (hrdhrd/MCO-E-Net, ``MCOE`` in ``mamba_fusion.py``).

The registry name ``mco_e_net_reference``: the same :class:`~fer_jax.models.mco_e_net.MCOENet`, with
every setting of the official code as its default (:data:`REFERENCE`), so that a state dict of their
model converts into it (``python -m fer_jax.convert --arch mco_e_net_reference``) and a config needs
to name only what it changes. ``config.model`` keys override :data:`REFERENCE` (same keys as
:class:`~fer_jax.models.mco_e_net.MCOENetConfig`).

The official forward, in fer_jax's terms: four ImageNet-headed ResNet-18s (first / last frame x
modality), the two 1000-d logits of a modality reshaped to 500 tokens of width 4 (= d_model, no
projection); one bidirectional Mamba per modality whose B and C get one bias-free projection of
``[x_dbl_rgb ; x_dbl_event]`` added to both modalities (``mjos.source="x_dbl"``, ``tied``); the backward
scan takes the FORWARD ``dt_proj`` bias (the converter fills ``dt_proj_b.bias`` with it); tokens +
Mamba output; MCIB gated on the projected features plus ``(p_rgb + p_event) / 2``; flatten -> Linear(2000,
1024) -> exact GELU -> dropout 0.5; HCE-MoE with experts ``i % 3`` = focal, attention, deep (learnable
residual from 0.3), router MLP 1024-512-8, top 2; torch LayerNorm epsilon 1e-5; no orthogonal loss.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from fer_jax.models import mco_e_net
from fer_jax.models.config import from_config_dict

# The official code's settings, nested as config.model (and MCOENetConfig) nests them
REFERENCE: dict[str, Any] = {
    "name": "mco_e_net_reference",
    "tokenization": "reference",
    "token_width": 4,
    "backbone_classes": 1000,
    "d_model": 4,  # d_inner 8, dt_rank 1, N 16
    "d_state": 16,
    "expand": 2,
    "mamba_residual": True,
    "mjos": {
        "mode": "fuse",
        "params": "BC",
        "source": "x_dbl",
        "tied": True,
        "bias": False,
        "grad": "authors",
    },
    "fusion": "mcib",
    "mcib": {"num_heads": 2, "gate_on": "projected", "residual": True},
    "neck": "flatten",
    "neck_dim": 1024,
    "neck_dropout": 0.5,
    "head": "moe",
    "moe": {
        "num_experts": 8,
        "top_k": 2,
        "expert_types": "focal,attention,deep",
        "router_hidden": 512,
        "router_heads": 4,
        "attention_heads": 2,
        "deep_depth": 5,
        "deep_dropout": 0.5,
        "deep_res_coef": 0.3,
        "focal_hidden": 512,
    },
    "orthogonal_weight": 0.0,
    "gelu": "exact",
    "layer_norm_eps": 1e-5,
    "init": "torch",  # torch's defaults for the non-Mamba layers, as their code leaves them
    "backbone_width": 64,
}


def _merge(base: dict[str, Any], over: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items() if over is not None else ():
        if isinstance(out.get(key), dict) and hasattr(value, "items"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def reference_config(**overrides: Any) -> mco_e_net.MCOENetConfig:
    """:data:`REFERENCE` with ``overrides`` (nested mappings for ``mjos`` / ``mcib`` / ``moe``)."""
    return from_config_dict(mco_e_net.MCOENetConfig, _merge(REFERENCE, overrides), where="model")


def model_config(config) -> mco_e_net.MCOENetConfig:
    """``config.model`` over :data:`REFERENCE` (+ ``data.num_frames`` / ``image_size`` / ``image_width``)."""
    data = config.get("data") or {}
    derived = {k: (f"data.{k}", data[k]) for k in mco_e_net.DATA_KEYS if k in data}
    merged = _merge(REFERENCE, config.model)
    return from_config_dict(mco_e_net.MCOENetConfig, merged, where="model", derived=derived)


def from_config(config, *, rngs) -> mco_e_net.MCOENet:
    """The reference model ``config.model`` describes; reads no file."""
    return mco_e_net.MCOENet(model_config(config), rngs=rngs)


def pretrained_targets(model: mco_e_net.MCOENet, config) -> list:
    """``[(model, model.weights)]`` for a converted folder of the authors' model, else the ResNet-18s
    with ImageNet weights (as mco_e_net's)."""
    return mco_e_net.targets_for(model, model_config(config))


def input_spec(config) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``rgb`` ``(m, H, W, 3)`` and ``event`` ``(m, H, W, C_ev)`` float32 (configs/see_reference.py: the
    authors' aspect-kept 100 x 133 frames; any H x W works: the tokens are globally pooled logits)."""
    return mco_e_net.spec_of(model_config(config))
