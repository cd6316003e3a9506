"""Comparison rows of paper 1's Table 2 that the ports make cheap: ResNet-18 per frame + LSTM / GRU (the
3D ResNet rows are ``fer_jax.models.r3d``, Former-DFER ``fer_jax.models.former_dfer``).

``frames (B, T, S, S, 3)`` -> ResNet-18 features per frame -> GAP ``(B, T, 512)`` -> one recurrent layer
(hidden ``rnn_hidden``, default 512; settings :class:`ResNetRNNConfig`) -> last hidden state -> dropout -> Linear -> logits.
Registry names ``resnet18_lstm`` and ``resnet18_gru``; they take only ``frames``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.models.compute import ComputeConfig, configure, forward
from fer_jax.models.config import from_config_dict, is_weights_dir
from fer_jax.models.resnet import resnet18

CELLS = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}
NAMES = ("resnet18_lstm", "resnet18_gru")


@dataclasses.dataclass(frozen=True)
class ResNetRNNConfig(ComputeConfig):
    """Settings of the ResNet-18 + LSTM / GRU baselines; ``name`` picks the cell (``resnet18_<cell>``).

    ``backbone_weights``: converted ImageNet ResNet-18 weights for :func:`pretrained_targets` ("" or
    "none": random init); never read by the model.
    """

    name: str = "resnet18_lstm"
    num_classes: int = 7
    rnn_hidden: int = 512
    dropout: float = 0.3
    backbone_weights: str = ""


class ResNetRNN(nnx.Module):
    """ResNet-18 + recurrent temporal model: ``model(frames) -> {"logits": (B, num_classes)}``.

    ``ResNetRNN(config, rngs=...)``; keyword ``overrides`` replace fields of ``config``.
    """

    def __init__(self, config: ResNetRNNConfig | None = None, *, rngs: nnx.Rngs, **overrides: Any):
        cfg = dataclasses.replace(config or ResNetRNNConfig(), **overrides)
        if cfg.name not in NAMES:
            raise ValueError(f"model.name must be one of {NAMES} for this baseline, got {cfg.name!r}")
        cell = cfg.name.split("_")[1]
        self.backbone = resnet18(num_classes=None, rngs=rngs)
        self.rnn = nnx.RNN(CELLS[cell](self.backbone.num_features, cfg.rnn_hidden, rngs=rngs))
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.fc = nnx.Linear(cfg.rnn_hidden, cfg.num_classes, rngs=rngs)
        configure(self, cfg)

    def __call__(self, frames: jax.Array) -> dict[str, jax.Array]:
        return forward(self, type(self)._forward, frames)

    def _forward(self, frames: jax.Array) -> dict[str, jax.Array]:
        if frames.ndim != 5:
            raise ValueError(f"frames must be (B, T, H, W, C), got {frames.shape}")
        b, t = frames.shape[:2]
        x = self.backbone(frames.reshape(b * t, *frames.shape[2:]))
        seq = jnp.mean(x, axis=(1, 2)).reshape(b, t, -1)
        out = self.rnn(seq)  # (B, T, hidden)
        return {"logits": self.fc(self.dropout(out[:, -1])).astype(jnp.float32)}


def model_config(config) -> ResNetRNNConfig:
    """``config.model`` as a :class:`ResNetRNNConfig`; ValueError naming an unknown or mistyped key."""
    return from_config_dict(ResNetRNNConfig, config.model, where="model")


def from_config(config, *, rngs: nnx.Rngs) -> ResNetRNN:
    """The baseline ``config.model.name`` names; reads no file (see :func:`pretrained_targets`)."""
    return ResNetRNN(model_config(config), rngs=rngs)


def pretrained_targets(model: ResNetRNN, config) -> list[tuple[nnx.Module, str]]:
    """``[(model.backbone, config.model.backbone_weights)]`` (a ResNet-18 without head), or ``[]``."""
    weights = model_config(config).backbone_weights
    return [(model.backbone, weights)] if is_weights_dir(weights) else []


def input_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
    """``frames`` ``(T, S, S, 3)`` float32 for one clip."""
    t, s = int(config.data.num_frames), int(config.data.image_size)
    return {"frames": ((t, s, s, 3), np.float32)}
