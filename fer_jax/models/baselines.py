"""Comparison rows of paper 1's Table 2 that the ports make cheap: ResNet-18 per frame + LSTM / GRU, and
3D ResNet-18 (``fer_jax.models.r3d``, registry name ``r3d_18``).

``frames (B, T, S, S, 3)`` -> ResNet-18 features per frame -> GAP ``(B, T, 512)`` -> one recurrent layer
(hidden ``config.model.rnn_hidden``, default 512) -> last hidden state -> dropout -> Linear -> logits.
Registry names ``resnet18_lstm`` and ``resnet18_gru``; they take only ``frames``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.models.resnet import resnet18

CELLS = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}


class ResNetRNN(nnx.Module):
    """ResNet-18 + recurrent temporal model: ``model(frames) -> {"logits": (B, num_classes)}``."""

    def __init__(
        self,
        *,
        cell: str = "lstm",
        num_classes: int = 7,
        hidden: int = 512,
        dropout: float = 0.3,
        rngs: nnx.Rngs,
    ):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.backbone = resnet18(num_classes=None, rngs=rngs)
        self.rnn = nnx.RNN(CELLS[cell](self.backbone.num_features, hidden, rngs=rngs))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, frames: jax.Array) -> dict[str, jax.Array]:
        if frames.ndim != 5:
            raise ValueError(f"frames must be (B, T, H, W, C), got {frames.shape}")
        b, t = frames.shape[:2]
        x = self.backbone(frames.reshape(b * t, *frames.shape[2:]))
        seq = jnp.mean(x, axis=(1, 2)).reshape(b, t, -1)
        out = self.rnn(seq)  # (B, T, hidden)
        return {"logits": self.fc(self.dropout(out[:, -1])).astype(jnp.float32)}


def from_config(config, *, rngs: nnx.Rngs) -> nnx.Module:
    name = config.model.name
    if name == "r3d_18":
        from fer_jax.models.r3d import R3D18

        return R3D18(
            num_classes=config.model.num_classes,
            width=config.model.get("width", 64),
            dropout=config.model.get("dropout", 0.0),
            rngs=rngs,
        )
    if name not in ("resnet18_lstm", "resnet18_gru"):
        raise ValueError(f"baselines has no model {name!r} (resnet18_lstm, resnet18_gru, r3d_18)")
    return ResNetRNN(
        cell=name.split("_")[1],
        num_classes=config.model.num_classes,
        hidden=config.model.get("rnn_hidden", 512),
        dropout=config.model.get("dropout", 0.3),
        rngs=rngs,
    )


def input_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
    t, s = int(config.data.num_frames), int(config.data.image_size)
    return {"frames": ((t, s, s, 3), np.float32)}
