"""Former-DFER (Zhao & Liu, ACM MM 2021; paper 1's Table 2 row [14]), layer for layer its authors' code.

``frames (B, T, S, S, 3)`` -> per frame the S-Former: ResNet-18 stem and layer1-3 -> the ``(h, w, 256)`` map
as ``h * w`` tokens + a learnt position embedding -> one pre-norm transformer layer (8 heads of 32, MLP
512) -> back to a map -> layer4 -> global average pool ``(B * T, 512)`` -> the T-Former: a class token
before the ``T`` frame tokens, + a position embedding, three pre-norm transformer layers (8 heads of 64,
MLP 1024) -> the class token ``(B, 512)`` -> Linear -> logits. 9.11 GMACs per 16x112x112 clip (paper 1).

Authors' code (zengqunzhao/Former-DFER, MIT): ``models/{S,T,ST}_Former.py``. Their tokens are the map's
row-major (h, w) cells, their GELU is the tanh approximation, LayerNorm eps 1e-5, no dropout (0.0), and
the position embeddings are sized for 16 frames at 112 px (49 spatial tokens, 17 temporal ones): here
``num_frames`` comes from ``data.num_frames`` and ``num_patches`` from ``data.image_size``, which equal
the authors' at 16 x 112. The S-Former's ResNet-18 is ``fer_jax.models.resnet`` (torchvision's layout, as
in the authors' code), so ``model.backbone_weights`` loads converted ImageNet ResNet-18 weights into it;
``python -m fer_jax.convert --arch former_dfer`` converts the authors' whole trained model (their released
checkpoints also pickle a ``RecorderMeter``, which ``torch.load(weights_only=True)`` refuses: save their
``["state_dict"]`` alone, e.g. as ``.safetensors``, in their environment first).
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
from fer_jax.models.layers import global_avg_pool, linear, max_pool_3x3_s2
from fer_jax.models.resnet import resnet18


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)  # torch's default eps


class Attention(nnx.Module):
    """Multi-head self-attention: ``to_qkv`` (no bias) -> softmax(q k^T / sqrt(dim_head)) v -> ``to_out``.
    ``(N, L, dim) -> (N, L, dim)``."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float, *, rngs: nnx.Rngs):
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_qkv = nnx.Linear(dim, 3 * inner, use_bias=False, rngs=rngs)
        self.to_out = linear(inner, dim, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, length, _ = x.shape
        q, k, v = jnp.split(self.to_qkv(x), 3, axis=-1)
        q, k, v = (t.reshape(n, length, self.heads, self.dim_head) for t in (q, k, v))
        dots = jnp.einsum("nihd,njhd->nhij", q, k) * self.dim_head**-0.5
        # softmax in float32 whatever the compute dtype (a no-op cast at float32)
        weights = jax.nn.softmax(dots.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("nhij,njhd->nihd", weights, v)
        return self.dropout(self.to_out(out.reshape(n, length, -1)))


class FeedForward(nnx.Module):
    """``fc1`` -> GELU (tanh approximation, the authors') -> dropout -> ``fc2`` -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float, *, rngs: nnx.Rngs):
        self.fc1 = linear(dim, hidden, rngs=rngs)
        self.fc2 = linear(hidden, dim, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(self.fc2(self.dropout(jax.nn.gelu(self.fc1(x), approximate=True))))


class TransformerLayer(nnx.Module):
    """Pre-norm layer: ``x + attn(attn_norm(x))``, then ``x + ff(ff_norm(x))``."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float, *, rngs: nnx.Rngs):
        self.attn_norm = _layer_norm(dim, rngs)
        self.attn = Attention(dim, heads, dim_head, dropout, rngs=rngs)
        self.ff_norm = _layer_norm(dim, rngs)
        self.ff = FeedForward(dim, mlp_dim, dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.attn_norm(x))
        return x + self.ff(self.ff_norm(x))


def _transformer(depth: int, *args: Any, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([TransformerLayer(*args, rngs=rngs) for _ in range(depth)])


def _tokens_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    return jax.random.normal(key, shape, dtype)  # the authors' torch.randn


def layer3_size(image_size: int) -> int:
    """Side of the ResNet-18 layer3 map for an ``image_size`` input (7 at 112): four stride-2 steps with
    torchvision's padding, ``s -> floor((s - 1) / 2) + 1``."""
    s = int(image_size)
    for _ in range(4):
        s = (s - 1) // 2 + 1
    return s


class SFormer(nnx.Module):
    """``(N, S, S, 3) -> (N, 512)``: ResNet-18 (``resnet``, no head) with ``spatial_transformer`` (dim 256,
    one layer) on the layer3 tokens; ``num_patches`` = rows of ``pos_embedding`` (49 at 112 px)."""

    def __init__(self, num_patches: int = 49, dropout: float = 0.0, *, rngs: nnx.Rngs):
        self.resnet = resnet18(num_classes=None, rngs=rngs)
        self.pos_embedding = nnx.Param(_tokens_init(rngs.params(), (1, num_patches, 256)))
        self.spatial_transformer = _transformer(1, 256, 8, 32, 512, dropout, rngs=rngs)
        self.remat = "none"  # per ResNet stage and transformer layer; model.remat via compute.configure

    def __call__(self, x: jax.Array) -> jax.Array:
        r = self.resnet
        x = max_pool_3x3_s2(jax.nn.relu(r.bn1(r.conv1(x))))
        for stage in (r.layer1, r.layer2, r.layer3):
            x = run_blocks(stage, x, self.remat)
        n, h, w, c = x.shape
        if h * w > self.pos_embedding.shape[1]:
            raise ValueError(
                f"S-Former: {h}x{w} layer3 tokens but {self.pos_embedding.shape[1]} position embeddings "
                "(set data.image_size to the model's size)"
            )
        tokens = x.reshape(n, h * w, c) + self.pos_embedding[:, : h * w]
        for layer in self.spatial_transformer:
            tokens = run_blocks([layer], tokens, self.remat)
        x = tokens.reshape(n, h, w, c)
        x = run_blocks(r.layer4, x, self.remat)
        return global_avg_pool(x)


class TFormer(nnx.Module):
    """``(B, T, 512) -> (B, 512)``: class token + ``T`` frame tokens + ``pos_embedding`` (``num_frames + 1``
    rows), ``spatial_transformer`` (the authors' name; three layers over time), the class token out."""

    def __init__(self, num_frames: int = 16, dropout: float = 0.0, *, rngs: nnx.Rngs):
        self.cls_token = nnx.Param(_tokens_init(rngs.params(), (1, 1, 512)))
        self.pos_embedding = nnx.Param(_tokens_init(rngs.params(), (1, num_frames + 1, 512)))
        self.spatial_transformer = _transformer(3, 512, 8, 64, 1024, dropout, rngs=rngs)
        self.remat = "none"  # per transformer layer; model.remat via compute.configure

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, d = x.shape
        if t + 1 > self.pos_embedding.shape[1]:
            raise ValueError(
                f"T-Former: {t} frames but position embeddings for {self.pos_embedding.shape[1] - 1}"
            )
        cls = jnp.broadcast_to(self.cls_token[...], (b, 1, d))
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embedding[:, : t + 1]
        for layer in self.spatial_transformer:
            x = run_blocks([layer], x, self.remat)
        return x[:, 0]


class FormerDFERNet(nnx.Module):
    """The authors' ``GenerateModel``: ``(B, T, S, S, 3) -> (B, num_classes)`` logits (``s_former``,
    ``t_former``, ``fc``). ``in_channels`` must be 3 (an attribute for the converter's metadata)."""

    def __init__(self, *, in_channels: int = 3, num_classes: int | None = 7, num_frames: int = 16,
                 num_patches: int = 49, dropout: float = 0.0, rngs: nnx.Rngs):  # fmt: skip
        if in_channels != 3:
            raise ValueError(f"Former-DFER takes RGB frames (in_channels=3), got {in_channels}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.s_former = SFormer(num_patches, dropout, rngs=rngs)
        self.t_former = TFormer(num_frames, dropout, rngs=rngs)
        self.fc = nnx.data(None) if num_classes is None else linear(512, num_classes, rngs=rngs)

    def __call__(self, frames: jax.Array) -> jax.Array:
        if frames.ndim != 5:
            raise ValueError(f"frames must be (B, T, H, W, C), got {frames.shape}")
        b, t = frames.shape[:2]
        x = self.t_former(self.s_former(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1))
        return x if self.fc is None else self.fc(x)


def former_dfer(*, in_channels: int = 3, num_classes: int | None = 7, rngs: nnx.Rngs) -> FormerDFERNet:
    """The authors' network as published: 16 frames at 112 px (the converter's ``former_dfer`` arch)."""
    return FormerDFERNet(in_channels=in_channels, num_classes=num_classes, rngs=rngs)


# -- registry contract ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FormerDFERConfig(ComputeConfig):
    """Settings of the Former-DFER baseline. ``num_frames`` / ``num_patches`` come from ``data.num_frames``
    / ``data.image_size`` (position-embedding sizes). ``backbone_weights``: a converted ImageNet ResNet-18
    (``python -m fer_jax.convert --arch resnet18``) for the S-Former's ResNet, or "" / "none"."""

    name: str = "former_dfer"
    num_classes: int = 7
    dropout: float = 0.0  # the authors' transformers: 0.0
    backbone_weights: str = ""
    num_frames: int = 16
    num_patches: int = 49


class FormerDFER(nnx.Module):
    """``model(frames) -> {"logits": (B, num_classes)}`` around :class:`FormerDFERNet` (``net``)."""

    def __init__(self, config: FormerDFERConfig | None = None, *, rngs: nnx.Rngs, **overrides: Any):
        cfg = dataclasses.replace(config or FormerDFERConfig(), **overrides)
        self.net = FormerDFERNet(num_classes=cfg.num_classes, num_frames=cfg.num_frames,
                                 num_patches=cfg.num_patches, dropout=cfg.dropout, rngs=rngs)  # fmt: skip
        configure(self, cfg)

    def _forward(self, frames: jax.Array) -> dict[str, jax.Array]:
        return {"logits": self.net(frames).astype(jnp.float32)}

    def __call__(self, frames: jax.Array) -> dict[str, jax.Array]:
        return forward(self, type(self)._forward, frames)


def model_config(config) -> FormerDFERConfig:
    """``config.model`` as a :class:`FormerDFERConfig`; ValueError naming an unknown or mistyped key."""
    derived = {
        "num_frames": ("data.num_frames", int(config.data.num_frames)),
        "num_patches": ("data.image_size", layer3_size(config.data.image_size) ** 2),
    }
    return from_config_dict(FormerDFERConfig, config.model, where="model", derived=derived)


def from_config(config, *, rngs: nnx.Rngs) -> FormerDFER:
    """The Former-DFER ``config.model`` describes (random initialisation; reads no file)."""
    return FormerDFER(model_config(config), rngs=rngs)


def pretrained_targets(model: FormerDFER, config) -> list[tuple[nnx.Module, str]]:
    """``[(model.net.s_former.resnet, config.model.backbone_weights)]`` (a ResNet-18 without head), or ``[]``."""
    weights = model_config(config).backbone_weights
    return [(model.net.s_former.resnet, weights)] if is_weights_dir(weights) else []


def input_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
    """``frames`` ``(T, S, S, 3)`` float32 for one clip."""
    t, s = int(config.data.num_frames), int(config.data.image_size)
    return {"frames": ((t, s, s, 3), np.float32)}
