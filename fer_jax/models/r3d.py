"""3D ResNet-18 (torchvision ``video.r3d_18``): a comparison row of paper 1's Table 2.

``frames (B, T, H, W, 3)`` -> stem (3x7x7 conv, stride (1, 2, 2)) -> four stages of 3x3x3 BasicBlocks
(strides 1, 2, 2, 2 in time and space) -> global average pool over (T, H, W) -> Linear -> logits.
At 16 x 112 x 112: stem (16, 56, 56, 64), layer2 (8, 28, 28, 128), layer3 (4, 14, 14, 256), layer4
(2, 7, 7, 512). Same layer names and BatchNorm conventions as ``fer_jax.models.resnet`` (torch-exact
BatchNorm, eps 1e-5, torch momentum 0.1), so a converter key table could map torchvision's weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.models.config import from_config_dict, is_weights_dir
from fer_jax.models.layers import BatchNorm, conv_init, zeros_init


def _conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], *, rngs):
    pad = tuple(((k - 1) // 2, (k - 1) // 2) for k in kernel)
    return nnx.Conv(cin, cout, kernel_size=kernel, strides=stride, padding=pad, use_bias=False,
                    kernel_init=conv_init, bias_init=zeros_init, rngs=rngs)  # fmt: skip


def _bn(c: int) -> BatchNorm:
    return BatchNorm(c, epsilon=1e-5, momentum=0.9)


class BasicBlock3d(nnx.Module):
    """3x3x3 conv (stride) -> BN -> ReLU -> 3x3x3 conv -> BN, + shortcut (1x1x1 strided conv + BN when the
    shape changes), ReLU. ``(N, T, H, W, in) -> (N, ceil(T / s), ceil(H / s), ceil(W / s), out)``."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        s = (stride,) * 3
        self.conv1 = _conv3d(cin, cout, (3, 3, 3), s, rngs=rngs)
        self.bn1 = _bn(cout)
        self.conv2 = _conv3d(cout, cout, (3, 3, 3), (1, 1, 1), rngs=rngs)
        self.bn2 = _bn(cout)
        if stride != 1 or cin != cout:
            self.downsample = nnx.List([_conv3d(cin, cout, (1, 1, 1), s, rngs=rngs), _bn(cout)])
        else:
            self.downsample = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        return jax.nn.relu(self.bn2(self.conv2(y)) + identity)


@dataclasses.dataclass(frozen=True)
class R3DConfig:
    """Settings of the 3D ResNet-18 baseline. ``backbone_weights`` is accepted for a uniform config but
    must be "" / "none": no converter key table exists for torchvision's video models."""

    name: str = "r3d_18"
    num_classes: int = 7
    width: int = 64  # first-stage channels; 64 = torchvision
    dropout: float = 0.0
    backbone_weights: str = ""


class R3D18(nnx.Module):
    """``model(frames) -> {"logits": (B, num_classes)}``; ``width`` scales every stage (64 = torchvision).

    ``R3D18(config, rngs=...)``; keyword ``overrides`` replace fields of ``config``.
    """

    def __init__(self, config: R3DConfig | None = None, *, rngs: nnx.Rngs, **overrides: Any):
        cfg = dataclasses.replace(config or R3DConfig(), **overrides)
        num_classes, width = cfg.num_classes, cfg.width
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stem_conv = _conv3d(3, width, (3, 7, 7), (1, 2, 2), rngs=rngs)
        self.stem_bn = _bn(width)
        layers, cin = [], width
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(
                nnx.List([BasicBlock3d(cin, w, stride, rngs=rngs), BasicBlock3d(w, w, 1, rngs=rngs)])
            )
            cin = w
        self.layers = nnx.List(layers)
        self.num_features = cin
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.fc = nnx.Linear(cin, num_classes, kernel_init=nnx.initializers.lecun_normal(), rngs=rngs)

    def features(self, frames: jax.Array) -> jax.Array:
        """``(B, T, H, W, 3) -> (B, T / 8, H / 16, W / 16, 8 * width)`` (ceil at each stride)."""
        if frames.ndim != 5:
            raise ValueError(f"frames must be (B, T, H, W, C), got {frames.shape}")
        x = jax.nn.relu(self.stem_bn(self.stem_conv(frames)))
        for stage in self.layers:
            for block in stage:
                x = block(x)
        return x

    def __call__(self, frames: jax.Array) -> dict[str, jax.Array]:
        x = jnp.mean(self.features(frames), axis=(1, 2, 3))
        return {"logits": self.fc(self.dropout(x)).astype(jnp.float32)}


# -- registry contract ----------------------------------------------------------------------------------
def model_config(config) -> R3DConfig:
    """``config.model`` as an :class:`R3DConfig`; ValueError naming an unknown or mistyped key."""
    return from_config_dict(R3DConfig, config.model, where="model")


def from_config(config, *, rngs: nnx.Rngs) -> R3D18:
    """The 3D ResNet-18 ``config.model`` describes (random initialisation)."""
    return R3D18(model_config(config), rngs=rngs)


def pretrained_targets(model: R3D18, config) -> list[tuple[nnx.Module, str]]:
    """Always ``[]``; ValueError when ``config.model.backbone_weights`` names a directory (no key table)."""
    del model
    weights = model_config(config).backbone_weights
    if is_weights_dir(weights):
        raise ValueError(
            f"model r3d_18 has no pretrained weights (no converter for torchvision video models); "
            f"set model.backbone_weights='' or 'none', got {weights!r}"
        )
    return []


def input_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
    """``frames`` ``(T, S, S, 3)`` float32 for one clip."""
    t, s = int(config.data.num_frames), int(config.data.image_size)
    return {"frames": ((t, s, s, 3), np.float32)}
