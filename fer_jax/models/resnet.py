"""ResNet-18 / ResNet-34 (BasicBlock ResNets) in Flax NNX, layer for layer torchvision's ``resnet18/34``.

Used per frame by MCO-E Net (one ResNet-18 per modality, ``in_channels`` = event bins for voxel grids) and
by the ResNet baselines. Inputs are NHWC float32 normalised as torchvision expects; any size >= 32.

Attribute names mirror torchvision's module names (``conv1``, ``bn1``, ``layer1[0].conv1``,
``layer2[0].downsample[0]``, ``fc``) so that ``fer_jax.convert`` maps a torchvision state dict key by key.
Padding is torchvision's explicit symmetric padding, so a 100x100 input ends on a 4x4 map and 112x112 too.
"""

from __future__ import annotations

import jax
from flax import nnx

from fer_jax.models.compute import run_blocks
from fer_jax.models.layers import BatchNorm, conv2d, global_avg_pool, linear, max_pool_3x3_s2

# torchvision's nn.BatchNorm2d defaults: eps 1e-5, torch momentum 0.1 (flax convention 0.9)
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _bn(channels: int) -> BatchNorm:
    return BatchNorm(channels, epsilon=BN_EPSILON, momentum=BN_MOMENTUM)


class BasicBlock(nnx.Module):
    """torchvision ``BasicBlock``: 3x3 conv (stride) -> BN -> ReLU -> 3x3 conv -> BN, + identity, ReLU.

    ``(N, H, W, in) -> (N, floor((H - 1) / stride) + 1, ..., out)``. The shortcut is a 1x1 strided conv + BN
    (``downsample[0]``, ``downsample[1]``) when the stride or the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = conv2d(in_channels, out_channels, 3, stride=stride, rngs=rngs)
        self.bn1 = _bn(out_channels)
        self.conv2 = conv2d(out_channels, out_channels, 3, rngs=rngs)
        self.bn2 = _bn(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nnx.List(
                [conv2d(in_channels, out_channels, 1, stride=stride, rngs=rngs), _bn(out_channels)]
            )
        else:
            self.downsample = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return jax.nn.relu(y + identity)


class ResNet(nnx.Module):
    """BasicBlock ResNet: stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool) -> 4 stages -> GAP -> ``fc``.

    ``__call__(x, *, return_stages=False)`` with ``x`` ``(N, H, W, in_channels)``:
    - ``num_classes`` int: logits ``(N, num_classes)``;
    - ``num_classes=None``: the last feature map ``(N, ceil(H / 32), ceil(W / 32), 8 * width)`` (512) (torchvision's
      floor arithmetic at each stride), and with ``return_stages=True`` the pair
      ``(last_map, [layer1, layer2, layer3, layer4 maps])`` (strides 4, 8, 16, 32; widths 64..512).
    With a head, ``return_stages=True`` returns ``(logits, stage_maps)``.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        in_channels: int = 3,
        num_classes: int | None = 1000,
        width: int = 64,
        rngs: nnx.Rngs,
    ):
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.remat = "none"  # per stage; model.remat via fer_jax.models.compute.configure
        # width != 64 is not torchvision's network (no pretrained weights fit it); it lets the CPU demo
        # shrink the backbone the way paper 1's "small backbone width" suggests, with the same topology.
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.num_features = widths[-1]
        self.conv1 = conv2d(in_channels, width, 7, stride=2, rngs=rngs)
        self.bn1 = _bn(width)
        c_in = width
        for i, (width, blocks) in enumerate(zip(widths, layers)):
            stage = []
            for b in range(blocks):
                stride = 2 if (i > 0 and b == 0) else 1
                stage.append(BasicBlock(c_in, width, stride, rngs=rngs))
                c_in = width
            setattr(self, f"layer{i + 1}", nnx.List(stage))
        if num_classes is None:
            self.fc = nnx.data(None)
        else:
            self.fc = linear(self.num_features, num_classes, rngs=rngs)

    def stages(self) -> list[nnx.List]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def __call__(self, x: jax.Array, *, return_stages: bool = False):
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected (N, H, W, {self.in_channels}) input, got shape {x.shape}")
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = max_pool_3x3_s2(x)
        stage_maps = []
        for stage in self.stages():
            x = run_blocks(stage, x, self.remat)
            stage_maps.append(x)
        out = x if self.fc is None else self.fc(global_avg_pool(x))
        return (out, stage_maps) if return_stages else out


def resnet18(
    *, in_channels: int = 3, num_classes: int | None = 1000, width: int = 64, rngs: nnx.Rngs
) -> ResNet:
    """torchvision ``resnet18`` (11.7 M parameters with the 1000-class head; 1.81 GMACs at 224).

    ``width`` is the first stage's channel count (64 in torchvision; stages use 1, 2, 4, 8 times it).
    """
    return ResNet((2, 2, 2, 2), in_channels=in_channels, num_classes=num_classes, width=width, rngs=rngs)


def resnet34(
    *, in_channels: int = 3, num_classes: int | None = 1000, width: int = 64, rngs: nnx.Rngs
) -> ResNet:
    """torchvision ``resnet34`` (21.8 M parameters with the 1000-class head; 3.66 GMACs at 224)."""
    return ResNet((3, 4, 6, 3), in_channels=in_channels, num_classes=num_classes, width=width, rngs=rngs)
