"""EfficientNetV2-S (and -M / -L) in Flax NNX, layer for layer torchvision's ``efficientnet_v2_s/m/l``.

MambaFER's per-frame backbone. Inputs NHWC float32 normalised as torchvision expects; any size >= 32.
Module names mirror torchvision's (``features[i][j].block[k][0]``, ``classifier`` = the ``Linear``
torchvision calls ``classifier.1``) so that ``fer_jax.convert`` maps a torchvision state dict key by key.

``width_mult`` / ``depth_mult`` scale every stage as torchvision's ``_efficientnet_conf`` does for
EfficientNet v1 (channels rounded by ``_make_divisible(c * width_mult, 8)``, layers by
``ceil(n * depth_mult)``); the final 1x1 conv's 1280 channels are scaled the same way (our choice:
torchvision fixes them for v2, which has no multipliers). With 1.0 / 1.0 the network is exactly
torchvision's EfficientNetV2-S; smaller multipliers give the fast network the CPU demo trains.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from flax import nnx

from fer_jax.models.compute import run_blocks
from fer_jax.models.layers import ConvNormAct, conv2d, global_avg_pool, linear

# torchvision: norm_layer = partial(nn.BatchNorm2d, eps=1e-3), torch momentum 0.1 (flax convention 0.9)
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.9
CLASSIFIER_DROPOUT = 0.2  # efficientnet_v2_s(dropout=0.2)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible``: nearest multiple of ``divisor``, never 10% below ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One row of torchvision's ``inverted_residual_setting`` (``MBConvConfig`` / ``FusedMBConvConfig``)."""

    fused: bool
    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    num_layers: int

    def scaled(self, width_mult: float, depth_mult: float) -> StageConfig:
        return dataclasses.replace(
            self,
            in_channels=make_divisible(self.in_channels * width_mult),
            out_channels=make_divisible(self.out_channels * width_mult),
            num_layers=int(math.ceil(self.num_layers * depth_mult)),
        )


# torchvision _efficientnet_conf("efficientnet_v2_s")
V2_S_STAGES = (
    StageConfig(True, 1, 3, 1, 24, 24, 2),
    StageConfig(True, 4, 3, 2, 24, 48, 4),
    StageConfig(True, 4, 3, 2, 48, 64, 4),
    StageConfig(False, 4, 3, 2, 64, 128, 6),
    StageConfig(False, 6, 3, 1, 128, 160, 9),
    StageConfig(False, 6, 3, 2, 160, 256, 15),
)
V2_S_LAST_CHANNELS = 1280
# torchvision _efficientnet_conf("efficientnet_v2_m" / "efficientnet_v2_l"); same 1280 last channels
V2_M_STAGES = (
    StageConfig(True, 1, 3, 1, 24, 24, 3),
    StageConfig(True, 4, 3, 2, 24, 48, 5),
    StageConfig(True, 4, 3, 2, 48, 80, 5),
    StageConfig(False, 4, 3, 2, 80, 160, 7),
    StageConfig(False, 6, 3, 1, 160, 176, 14),
    StageConfig(False, 6, 3, 2, 176, 304, 18),
    StageConfig(False, 6, 3, 1, 304, 512, 5),
)
V2_L_STAGES = (
    StageConfig(True, 1, 3, 1, 32, 32, 4),
    StageConfig(True, 4, 3, 2, 32, 64, 7),
    StageConfig(True, 4, 3, 2, 64, 96, 7),
    StageConfig(False, 4, 3, 2, 96, 192, 10),
    StageConfig(False, 6, 3, 1, 192, 224, 19),
    StageConfig(False, 6, 3, 2, 224, 384, 25),
    StageConfig(False, 6, 3, 1, 384, 640, 7),
)


def _cna(c_in: int, c_out: int, k: int, *, stride: int = 1, groups: int = 1, activation="silu", rngs):
    return ConvNormAct(
        c_in,
        c_out,
        k,
        stride=stride,
        groups=groups,
        activation=activation,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        rngs=rngs,
    )


class SqueezeExcitation(nnx.Module):
    """``torchvision.ops.SqueezeExcitation`` with SiLU: ``x * sigmoid(fc2(silu(fc1(mean_hw(x)))))``.

    ``fc1`` / ``fc2`` are 1x1 convs with bias, as in torchvision (so their weights convert unchanged).
    ``(N, H, W, C) -> (N, H, W, C)``.
    """

    def __init__(self, channels: int, squeeze_channels: int, *, rngs: nnx.Rngs):
        self.fc1 = conv2d(channels, squeeze_channels, 1, use_bias=True, rngs=rngs)
        self.fc2 = conv2d(squeeze_channels, channels, 1, use_bias=True, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = x.mean(axis=(1, 2), keepdims=True)
        s = jax.nn.sigmoid(self.fc2(jax.nn.silu(self.fc1(s))))
        return x * s


class StochasticDepth(nnx.Dropout):
    """``torchvision.ops.StochasticDepth(p, mode="row")``: in training, zero a whole sample's residual
    branch with probability ``p`` and scale survivors by ``1 / (1 - p)``; identity in eval mode or at p=0.

    This is dropout with one Bernoulli draw per sample (broadcast over H, W, C), from the ``dropout``
    stream of the model's ``nnx.Rngs``.
    """

    def __init__(self, p: float, *, rngs: nnx.Rngs):
        super().__init__(rate=p, broadcast_dims=(1, 2, 3), rngs=rngs)


class MBConv(nnx.Module):
    """torchvision ``MBConv`` (``fused=False``) or ``FusedMBConv`` (``fused=True``).

    MBConv: [1x1 expand conv-BN-SiLU] -> kxk depthwise conv-BN-SiLU (stride) -> SE -> 1x1 project conv-BN.
    FusedMBConv: kxk expand conv-BN-SiLU (stride) -> 1x1 project conv-BN, or a single kxk conv-BN-SiLU when
    ``expand_ratio == 1``. Residual (with stochastic depth) when stride 1 and in == out channels.
    ``(N, H, W, in) -> (N, floor((H - 1) / stride) + 1, ..., out)``.
    """

    def __init__(
        self,
        fused: bool,
        expand_ratio: int,
        kernel: int,
        stride: int,
        in_channels: int,
        out_channels: int,
        sd_prob: float,
        *,
        rngs: nnx.Rngs,
    ):
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio)
        layers: list[nnx.Module] = []
        if fused:
            if expanded != in_channels:
                layers.append(_cna(in_channels, expanded, kernel, stride=stride, rngs=rngs))
                layers.append(_cna(expanded, out_channels, 1, activation=None, rngs=rngs))
            else:
                layers.append(_cna(in_channels, out_channels, kernel, stride=stride, rngs=rngs))
        else:
            if expanded != in_channels:
                layers.append(_cna(in_channels, expanded, 1, rngs=rngs))
            layers.append(_cna(expanded, expanded, kernel, stride=stride, groups=expanded, rngs=rngs))
            layers.append(SqueezeExcitation(expanded, max(1, in_channels // 4), rngs=rngs))
            layers.append(_cna(expanded, out_channels, 1, activation=None, rngs=rngs))
        self.block = nnx.List(layers)
        self.stochastic_depth = StochasticDepth(sd_prob, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        for layer in self.block:
            y = layer(y)
        if self.use_res_connect:
            y = self.stochastic_depth(y) + x
        return y


class EfficientNetV2(nnx.Module):
    """torchvision ``EfficientNet`` with a V2 stage table.

    ``features[0]`` stem 3x3/2 conv-BN-SiLU; ``features[1..-2]`` the stages (6 for S, 7 for M / L);
    ``features[-1]`` 1x1 conv-BN-SiLU to ``num_features`` channels; then GAP -> dropout -> ``classifier``.

    ``__call__(x, *, return_stages=False)`` with ``x`` ``(N, H, W, in_channels)``:
    - ``num_classes`` int: logits ``(N, num_classes)``;
    - ``num_classes=None``: the last feature map ``(N, h, w, num_features)`` (stride 32: 112 -> 4x4);
    - ``return_stages=True``: ``(output, [each stage's output])`` (S: strides 2, 4, 8, 16, 16, 32).
    """

    def __init__(
        self,
        stages: tuple[StageConfig, ...] = V2_S_STAGES,
        last_channels: int = V2_S_LAST_CHANNELS,
        *,
        in_channels: int = 3,
        num_classes: int | None = 1000,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        stochastic_depth_prob: float = 0.2,
        dropout: float = CLASSIFIER_DROPOUT,
        rngs: nnx.Rngs,
    ):
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError(f"width_mult and depth_mult must be > 0, got {width_mult}, {depth_mult}")
        if not 0.0 <= stochastic_depth_prob < 1.0:
            raise ValueError(f"stochastic_depth_prob must be in [0, 1), got {stochastic_depth_prob}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.remat = "none"  # per stage; model.remat via fer_jax.models.compute.configure
        confs = [s.scaled(width_mult, depth_mult) for s in stages]
        self.num_features = make_divisible(last_channels * width_mult)
        features: list[nnx.Module] = [_cna(in_channels, confs[0].in_channels, 3, stride=2, rngs=rngs)]
        total_blocks = sum(c.num_layers for c in confs)
        block_id = 0
        for c in confs:
            blocks = []
            for j in range(c.num_layers):
                # torchvision: stochastic depth grows linearly with the block index over the whole net
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                blocks.append(
                    MBConv(
                        c.fused,
                        c.expand_ratio,
                        c.kernel,
                        c.stride if j == 0 else 1,
                        c.in_channels if j == 0 else c.out_channels,
                        c.out_channels,
                        sd_prob,
                        rngs=rngs,
                    )
                )
                block_id += 1
            features.append(nnx.List(blocks))
        features.append(_cna(confs[-1].out_channels, self.num_features, 1, rngs=rngs))
        self.features = nnx.List(features)
        if num_classes is None:
            self.dropout = nnx.data(None)
            self.classifier = nnx.data(None)
        else:
            self.dropout = nnx.Dropout(dropout, rngs=rngs)
            self.classifier = linear(self.num_features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, return_stages: bool = False):
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected (N, H, W, {self.in_channels}) input, got shape {x.shape}")
        x = self.features[0](x)
        stage_maps = []
        for stage in self.features[1:-1]:
            x = run_blocks(stage, x, self.remat)
            stage_maps.append(x)
        x = self.features[-1](x)
        out = x if self.classifier is None else self.classifier(self.dropout(global_avg_pool(x)))
        return (out, stage_maps) if return_stages else out


def efficientnet_v2_s(
    *,
    in_channels: int = 3,
    num_classes: int | None = 1000,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    stochastic_depth_prob: float = 0.2,
    rngs: nnx.Rngs,
) -> EfficientNetV2:
    """torchvision ``efficientnet_v2_s`` (21.5 M parameters with the head; 2.85 GMACs at 224)."""
    return EfficientNetV2(
        V2_S_STAGES,
        V2_S_LAST_CHANNELS,
        in_channels=in_channels,
        num_classes=num_classes,
        width_mult=width_mult,
        depth_mult=depth_mult,
        stochastic_depth_prob=stochastic_depth_prob,
        rngs=rngs,
    )


def efficientnet_v2_m(
    *,
    in_channels: int = 3,
    num_classes: int | None = 1000,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    stochastic_depth_prob: float = 0.2,
    rngs: nnx.Rngs,
) -> EfficientNetV2:
    """torchvision ``efficientnet_v2_m`` (54.1 M parameters with the head; classifier dropout 0.3)."""
    return EfficientNetV2(
        V2_M_STAGES,
        V2_S_LAST_CHANNELS,
        in_channels=in_channels,
        num_classes=num_classes,
        width_mult=width_mult,
        depth_mult=depth_mult,
        stochastic_depth_prob=stochastic_depth_prob,
        dropout=0.3,
        rngs=rngs,
    )


def efficientnet_v2_l(
    *,
    in_channels: int = 3,
    num_classes: int | None = 1000,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    stochastic_depth_prob: float = 0.2,
    rngs: nnx.Rngs,
) -> EfficientNetV2:
    """torchvision ``efficientnet_v2_l`` (118.5 M parameters with the head; classifier dropout 0.4)."""
    return EfficientNetV2(
        V2_L_STAGES,
        V2_S_LAST_CHANNELS,
        in_channels=in_channels,
        num_classes=num_classes,
        width_mult=width_mult,
        depth_mult=depth_mult,
        stochastic_depth_prob=stochastic_depth_prob,
        dropout=0.4,
        rngs=rngs,
    )
