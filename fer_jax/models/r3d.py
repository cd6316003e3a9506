"""3D-convolution ResNet-18s, the video rows of paper 1's Table 2: Hara's 3D ResNet-18, R(2+1)D-18, R3D-18.

``frames (B, T, H, W, 3)`` -> stem -> four stages of two BasicBlocks (strides 1, 2, 2, 2 in time and space)
-> global average pool over (T, H, W) -> Linear -> logits. Three architectures (``ARCHS``):

- ``resnet3d_18``: Hara et al. (CVPR 2018, the row paper 1 cites as [11]): stem 7x7x7 conv with stride
  (1, 2, 2) and a 3x3x3 max-pool with stride 2, 3x3x3 convs in the blocks, projection shortcuts (Hara's
  type "B", the shortcut of his released Kinetics weights). 8.31 GMACs per 16x112x112 clip; 16 x 112 ->
  stem (16, 56, 56), pool (8, 28, 28), layer4 (1, 4, 4, 512).
- ``r2plus1d_18``: torchvision ``video.r2plus1d_18`` (Tran et al., CVPR 2018): every 3x3x3 conv factored
  into a 1x3x3 spatial conv to ``mid`` channels, BN, ReLU, a 3x1x1 temporal conv, with ``mid`` chosen so
  the parameter count equals the 3D conv's; stem 1x7x7 (45 channels) then 3x1x1; no max-pool.
  40.6 GMACs per 16x112x112 clip; layer4 (2, 7, 7, 512).
- ``r3d_18``: torchvision ``video.r3d_18`` (Tran et al.): stem 3x7x7 with stride (1, 2, 2), no max-pool,
  3x3x3 blocks. 40.7 GMACs per clip. Not the paper's row (its 8.32 G is Hara's network); kept because
  torchvision ships Kinetics-400 weights for it that ``python -m fer_jax.convert --arch r3d_18`` loads.

Attribute names are Hara's module names (``conv1``, ``bn1``, ``layer2[0].downsample[0]``, ``fc``), which
his checkpoints use as they are; ``fer_jax.convert.tables`` renames them for torchvision's ``stem`` /
``conv1.0.0`` layout. BatchNorm is torch-exact (eps 1e-5, torch momentum 0.1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.models.compute import ComputeConfig, configure, forward, run_blocks
from fer_jax.models.config import from_config_dict, is_weights_dir
from fer_jax.models.layers import BatchNorm, conv_init, zeros_init

ARCHS = ("resnet3d_18", "r2plus1d_18", "r3d_18")
Triple = tuple[int, int, int]


def _conv3d(cin: int, cout: int, kernel: Triple, stride: Triple, *, rngs: nnx.Rngs) -> nnx.Conv:
    """``nn.Conv3d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)`` on NTHWC."""
    pad = tuple(((k - 1) // 2, (k - 1) // 2) for k in kernel)
    return nnx.Conv(cin, cout, kernel_size=kernel, strides=stride, padding=pad, use_bias=False,
                    kernel_init=conv_init, bias_init=zeros_init, rngs=rngs)  # fmt: skip


def _bn(c: int) -> BatchNorm:
    return BatchNorm(c, epsilon=1e-5, momentum=0.9)


class Conv2Plus1D(nnx.Module):
    """``spatial`` (1 x k x k conv, stride (1, s, s)) -> ``bn`` -> ReLU -> ``temporal`` (k_t x 1 x 1, stride
    (s_t, 1, 1)): torchvision's ``Conv2Plus1D`` (and, with k 7 / k_t 3, its R(2+1)D stem)."""

    def __init__(self, cin: int, mid: int, cout: int, stride: Triple, *, k: int = 3, k_t: int = 3,
                 rngs: nnx.Rngs):  # fmt: skip
        self.spatial = _conv3d(cin, mid, (1, k, k), (1, stride[1], stride[2]), rngs=rngs)
        self.bn = _bn(mid)
        self.temporal = _conv3d(mid, cout, (k_t, 1, 1), (stride[0], 1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.temporal(jax.nn.relu(self.bn(self.spatial(x))))


def _block_conv(arch: str, cin: int, cout: int, mid: int, stride: int, *, rngs: nnx.Rngs) -> nnx.Module:
    s = (stride,) * 3
    if arch == "r2plus1d_18":
        return Conv2Plus1D(cin, mid, cout, s, rngs=rngs)
    return _conv3d(cin, cout, (3, 3, 3), s, rngs=rngs)


class BasicBlock3d(nnx.Module):
    """conv1 (stride) -> BN -> ReLU -> conv2 -> BN, + shortcut (1x1x1 strided conv + BN when the shape
    changes), ReLU. ``(N, T, H, W, in) -> (N, ceil(T / s), ceil(H / s), ceil(W / s), out)``; the convs are
    3x3x3, or (2+1)D for ``r2plus1d_18`` (both with torchvision's ``midplanes`` from the block's input)."""

    def __init__(self, arch: str, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        # torchvision: the (2+1)D conv has as many parameters as the 3x3x3 conv it replaces
        mid = (cin * cout * 27) // (cin * 9 + 3 * cout)
        self.conv1 = _block_conv(arch, cin, cout, mid, stride, rngs=rngs)
        self.bn1 = _bn(cout)
        self.conv2 = _block_conv(arch, cout, cout, mid, 1, rngs=rngs)
        self.bn2 = _bn(cout)
        if stride != 1 or cin != cout:
            s = (stride,) * 3
            self.downsample = nnx.List([_conv3d(cin, cout, (1, 1, 1), s, rngs=rngs), _bn(cout)])
        else:
            self.downsample = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        return jax.nn.relu(self.bn2(self.conv2(y)) + identity)


class VideoResNet(nnx.Module):
    """One of ``ARCHS``: ``(B, T, H, W, in_channels)`` -> logits ``(B, num_classes)``, or with
    ``num_classes=None`` the last feature map ``(B, T', H', W', 8 * width)``. ``width`` != 64 scales every
    stage (not a published network: no pretrained weights fit it; it keeps the tests small)."""

    def __init__(self, arch: str, *, in_channels: int = 3, num_classes: int | None = 400, width: int = 64,
                 rngs: nnx.Rngs):  # fmt: skip
        if arch not in ARCHS:
            raise ValueError(f"unknown video ResNet {arch!r}; known: {', '.join(ARCHS)}")
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1, got {in_channels}, {width}")
        self.arch, self.in_channels, self.num_classes = arch, in_channels, num_classes
        self.remat = "none"  # per stage; model.remat via fer_jax.models.compute.configure
        if arch == "resnet3d_18":
            self.conv1 = _conv3d(in_channels, width, (7, 7, 7), (1, 2, 2), rngs=rngs)
        elif arch == "r3d_18":
            self.conv1 = _conv3d(in_channels, width, (3, 7, 7), (1, 2, 2), rngs=rngs)
        else:  # torchvision's R2Plus1dStem: 45 channels after the spatial 7x7, whatever the width
            mid = 45 * width // 64
            self.conv1 = Conv2Plus1D(in_channels, mid, width, (1, 2, 2), k=7, k_t=3, rngs=rngs)
        self.bn1 = _bn(width)
        cin = width
        for i in range(4):
            w = width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock3d(arch, cin, w, stride, rngs=rngs), BasicBlock3d(arch, w, w, 1, rngs=rngs)]
            setattr(self, f"layer{i + 1}", nnx.List(blocks))
            cin = w
        self.num_features = cin
        if num_classes is None:
            self.fc = nnx.data(None)
        else:
            self.fc = nnx.Linear(cin, num_classes, kernel_init=nnx.initializers.lecun_normal(), rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """``(B, T, H, W, in_channels) -> (B, T', H', W', 8 * width)``, the layer4 map."""
        if x.ndim != 5 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected (B, T, H, W, {self.in_channels}) input, got shape {x.shape}")
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        if self.arch == "resnet3d_18":
            x = nnx.max_pool(x, window_shape=(3, 3, 3), strides=(2, 2, 2), padding=((1, 1),) * 3)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = run_blocks(stage, x, self.remat)
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.features(x)
        return x if self.fc is None else self.fc(jnp.mean(x, axis=(1, 2, 3)))


def resnet3d_18(*, in_channels: int = 3, num_classes: int | None = 700, width: int = 64,
                rngs: nnx.Rngs) -> VideoResNet:  # fmt: skip
    """Hara et al.'s 3D ResNet-18 (33.2 M parameters with his 700-class Kinetics head)."""
    return VideoResNet(
        "resnet3d_18", in_channels=in_channels, num_classes=num_classes, width=width, rngs=rngs
    )


def r2plus1d_18(*, in_channels: int = 3, num_classes: int | None = 400, width: int = 64,
                rngs: nnx.Rngs) -> VideoResNet:  # fmt: skip
    """torchvision ``video.r2plus1d_18`` (31,505,325 parameters with the 400-class head)."""
    return VideoResNet(
        "r2plus1d_18", in_channels=in_channels, num_classes=num_classes, width=width, rngs=rngs
    )


def r3d_18(*, in_channels: int = 3, num_classes: int | None = 400, width: int = 64,
           rngs: nnx.Rngs) -> VideoResNet:  # fmt: skip
    """torchvision ``video.r3d_18`` (33,371,472 parameters with the 400-class head)."""
    return VideoResNet("r3d_18", in_channels=in_channels, num_classes=num_classes, width=width, rngs=rngs)


# -- the Table 2 baseline: backbone without head + dropout + a new head ------------------------------------
@dataclasses.dataclass(frozen=True)
class VideoResNetConfig(ComputeConfig):
    """Settings of the 3D ResNet baselines; ``name`` is one of ``ARCHS``. ``backbone_weights``: a directory
    written by ``python -m fer_jax.convert --arch <name>`` (Kinetics weights) or "" / "none"."""

    name: str = "resnet3d_18"
    num_classes: int = 7
    width: int = 64  # first-stage channels; 64 = the published networks
    dropout: float = 0.0
    backbone_weights: str = ""


class VideoResNetClassifier(nnx.Module):
    """``model(frames) -> {"logits": (B, num_classes)}``: ``backbone`` (a :class:`VideoResNet` without
    head, what ``backbone_weights`` fills) -> mean over (T, H, W) -> dropout -> ``fc``.

    ``VideoResNetClassifier(config, rngs=...)``; keyword ``overrides`` replace fields of ``config``.
    """

    def __init__(self, config: VideoResNetConfig | None = None, *, rngs: nnx.Rngs, **overrides: Any):
        cfg = dataclasses.replace(config or VideoResNetConfig(), **overrides)
        self.backbone = VideoResNet(cfg.name, num_classes=None, width=cfg.width, rngs=rngs)
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        n = self.backbone.num_features
        self.fc = nnx.Linear(n, cfg.num_classes, kernel_init=nnx.initializers.lecun_normal(), rngs=rngs)
        configure(self, cfg)

    def features(self, frames: jax.Array) -> jax.Array:
        """``(B, T, H, W, 3) -> (B, T', H', W', 8 * width)``, the last stage's map."""
        return self.backbone(frames)

    def _forward(self, frames: jax.Array) -> dict[str, jax.Array]:
        x = jnp.mean(self.features(frames), axis=(1, 2, 3))
        return {"logits": self.fc(self.dropout(x)).astype(jnp.float32)}

    def __call__(self, frames: jax.Array) -> dict[str, jax.Array]:
        return forward(self, type(self)._forward, frames)


# -- registry contract ----------------------------------------------------------------------------------
def model_config(config) -> VideoResNetConfig:
    """``config.model`` as a :class:`VideoResNetConfig`; ValueError naming an unknown or mistyped key."""
    cfg = from_config_dict(VideoResNetConfig, config.model, where="model")
    if cfg.name not in ARCHS:
        raise ValueError(f"model.name must be one of {ARCHS} for this baseline, got {cfg.name!r}")
    return cfg


def from_config(config, *, rngs: nnx.Rngs) -> VideoResNetClassifier:
    """The 3D ResNet ``config.model`` describes (random initialisation; reads no file)."""
    return VideoResNetClassifier(model_config(config), rngs=rngs)


def pretrained_targets(model: VideoResNetClassifier, config) -> list[tuple[nnx.Module, str]]:
    """``[(model.backbone, config.model.backbone_weights)]`` (a converted ``<name>`` checkpoint), or ``[]``."""
    weights = model_config(config).backbone_weights
    return [(model.backbone, weights)] if is_weights_dir(weights) else []


def input_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
    """``frames`` ``(T, S, S, 3)`` float32 for one clip."""
    t, s = int(config.data.num_frames), int(config.data.image_size)
    return {"frames": ((t, s, s, 3), np.float32)}
