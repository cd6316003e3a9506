"""Attention pieces of MambaFER's facial CBAM and its temporal self-attention (paper 1, Section 3).

Everything works on channels-last feature maps ``(N, h, w, C)`` (``N`` = batch x frames) and on
landmarks ``(N, 68, 2)`` given as (x, y) in [0, 1] of the frame (iBUG 68-point order). The pieces:

- :class:`ChannelAttention`: CBAM channel attention, a shared MLP on the average- and max-pooled vectors.
- :func:`landmark_heatmaps` / :func:`landmark_mask`: Gaussian heatmaps of the 68 landmarks at feature
  resolution and their maximum, the "landmark mask" of the paper.
- :class:`FacialRegionAttention`: 8 learned region maps weighted per frame and gated by the landmark mask.
- :class:`MultiScaleSpatialAttention`: CBAM spatial attention with 3x3, 5x5 and 7x7 kernels on the pooled
  (avg, max) 2-channel map.
- :class:`FacialEnhancer`: a cheap depthwise refinement (see its docstring for the choice).
- :class:`FacialCBAM`: the three attention stages and the enhancer, each switchable.
- :class:`TemporalSelfAttention`: pre-norm residual multi-head self-attention over frames.

``CANONICAL_LANDMARKS`` (= ``fer_jax.data.constants.TEMPLATE_68``, the one aligned-face template of the
68 points; ``fer_jax.models`` may import that dependency-free module) replaces the landmarks of a frame
that has none (all coordinates zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fer_jax.data.constants import NUM_LANDMARKS as NUM_LANDMARKS  # re-exported: the old home of the count
from fer_jax.data.constants import TEMPLATE_68
from fer_jax.models.compute import f32_softmax_attention

# The aligned-face template lives in fer_jax.data.constants (dependency-free): the same points that
# preprocessing aligns faces to and stores for frames without landmarks. The old name stays importable.
CANONICAL_LANDMARKS = TEMPLATE_68


def fill_missing_landmarks(landmarks: jax.Array) -> jax.Array:
    """Replaces frames whose landmarks are all zero (none detected / not stored) by the template.

    landmarks: ``(..., 68, 2)``; returns the same shape.
    """
    missing = jnp.all(landmarks == 0, axis=(-2, -1), keepdims=True)
    return jnp.where(missing, jnp.asarray(TEMPLATE_68), landmarks)


def landmark_heatmaps(landmarks: jax.Array, height: int, width: int, sigma: float = 0.5) -> jax.Array:
    """Gaussian heatmaps of each landmark on an ``height x width`` grid.

    landmarks: ``(N, L, 2)`` (x, y) in [0, 1]; sigma in cells of the grid (so the blob keeps its size
    relative to the feature map whatever the input resolution). Returns ``(N, height, width, L)`` in
    (0, 1], equal to 1 at a cell centre that coincides with a landmark.
    """
    ys = (jnp.arange(height, dtype=jnp.float32) + 0.5) / height
    xs = (jnp.arange(width, dtype=jnp.float32) + 0.5) / width
    # distances measured in grid cells so sigma is resolution independent
    dx = (xs[None, None, :, None] - landmarks[:, None, None, :, 0]) * width  # (N, 1, w, L)
    dy = (ys[None, :, None, None] - landmarks[:, None, None, :, 1]) * height  # (N, h, 1, L)
    return jnp.exp(-(dx**2 + dy**2) / (2.0 * sigma**2))


def landmark_mask(landmarks: jax.Array, height: int, width: int, sigma: float = 0.5) -> jax.Array:
    """The landmark mask: maximum over the landmarks' Gaussian heatmaps, ``(N, height, width)`` in [0, 1]."""
    return jnp.max(landmark_heatmaps(landmarks, height, width, sigma), axis=-1)


class ChannelAttention(nnx.Module):
    """CBAM channel attention: ``x * sigmoid(MLP(avgpool x) + MLP(maxpool x))``, shared MLP C -> C/r -> C.

    x: ``(N, h, w, C)`` -> ``(N, h, w, C)``.
    """

    def __init__(self, channels: int, *, reduction: int = 16, rngs: nnx.Rngs):
        hidden = max(channels // reduction, 8)
        self.fc1 = nnx.Linear(channels, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, channels, rngs=rngs)

    def _mlp(self, v: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.relu(self.fc1(v)))

    def weights(self, x: jax.Array) -> jax.Array:
        """The per-channel gate ``(N, C)`` in (0, 1)."""
        return jax.nn.sigmoid(self._mlp(jnp.mean(x, axis=(1, 2))) + self._mlp(jnp.max(x, axis=(1, 2))))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.weights(x)[:, None, None, :]


class FacialRegionAttention(nnx.Module):
    """Facial-region attention over ``num_regions`` learned maps, optionally gated by the landmark mask.

    A 1x1 conv predicts ``num_regions`` soft region maps ``R_k = sigmoid(conv(x))`` (eyes, brows, mouth,
    cheeks... learned, not labelled); a linear layer on the pooled features gives per-frame region
    importances ``a = softmax(W gap(x))``, and the attention is ``A = sum_k a_k R_k`` in (0, 1).

    Combination with the landmark mask ``M`` (the paper does not say how): ``A' = A * (f + (1 - f) M)`` with a
    floor ``f = mask_floor`` — the mask is a prior that damps cells far from every landmark (background,
    hair) without zeroing them, so a poorly localised landmark cannot switch features off. The features are
    then emphasised residually, ``x * (1 + A')``, so this stage can only highlight regions; the multiplicative
    suppression is left to the channel and spatial stages of the CBAM.

    x: ``(N, h, w, C)``, landmarks ``(N, 68, 2)`` or None -> ``(N, h, w, C)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_regions: int = 8,
        use_landmark_mask: bool = True,
        mask_floor: float = 0.5,
        landmark_sigma: float = 0.5,
        rngs: nnx.Rngs,
    ):
        self.region_conv = nnx.Conv(channels, num_regions, (1, 1), rngs=rngs)
        self.importance = nnx.Linear(channels, num_regions, rngs=rngs)
        self.use_landmark_mask = use_landmark_mask
        self.mask_floor = mask_floor
        self.landmark_sigma = landmark_sigma

    def attention(self, x: jax.Array, landmarks: jax.Array | None) -> jax.Array:
        """The attention map ``(N, h, w)`` in (0, 1)."""
        regions = jax.nn.sigmoid(self.region_conv(x))  # (N, h, w, K)
        # softmax in float32 whatever the compute dtype; the map returns in x.dtype (no-ops at float32)
        importance = jax.nn.softmax(self.importance(jnp.mean(x, axis=(1, 2))).astype(jnp.float32), axis=-1)
        att = jnp.einsum("nhwk,nk->nhw", regions, importance)
        if self.use_landmark_mask:
            if landmarks is None:
                raise ValueError("FacialRegionAttention with use_landmark_mask needs landmarks")
            mask = landmark_mask(landmarks, x.shape[1], x.shape[2], self.landmark_sigma)
            att = att * (self.mask_floor + (1.0 - self.mask_floor) * mask)
        return att.astype(x.dtype)

    def __call__(self, x: jax.Array, landmarks: jax.Array | None = None) -> jax.Array:
        return x * (1.0 + self.attention(x, landmarks)[..., None])


class MultiScaleSpatialAttention(nnx.Module):
    """CBAM spatial attention at several scales.

    The channel-pooled map ``[mean_c x, max_c x]`` ``(N, h, w, 2)`` goes through one conv per kernel size
    (2 -> 1 channel each); a 1x1 conv fuses the responses into one logit map and ``x * sigmoid(.)`` is
    returned. Cost per frame ``O(h w (sum_k 2 k^2 + C))`` as in the paper's Section 3.

    x: ``(N, h, w, C)`` -> ``(N, h, w, C)``.
    """

    def __init__(self, *, kernel_sizes: Sequence[int] = (3, 5, 7), rngs: nnx.Rngs):
        self.convs = nnx.List([nnx.Conv(2, 1, (k, k), padding="SAME", rngs=rngs) for k in kernel_sizes])
        self.fuse = nnx.Conv(len(kernel_sizes), 1, (1, 1), rngs=rngs)

    def attention(self, x: jax.Array) -> jax.Array:
        """The spatial gate ``(N, h, w)`` in (0, 1)."""
        pooled = jnp.concatenate([jnp.mean(x, -1, keepdims=True), jnp.max(x, -1, keepdims=True)], -1)
        multi = jnp.concatenate([conv(pooled) for conv in self.convs], axis=-1)
        return jax.nn.sigmoid(self.fuse(multi))[..., 0]

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.attention(x)[..., None]


class FacialEnhancer(nnx.Module):
    """The facial enhancer: ``x + SiLU(BN(depthwise3x3(x)))``.

    The paper names a "facial enhancement layer" without detail. We use a residual depthwise 3x3 conv: it
    sharpens local structure (a learned, per-channel unsharp-mask-like filter) at ``9 C`` MACs per cell,
    against ``C^2`` for a pointwise layer, in keeping with the paper's cheap-CBAM cost formula.

    x: ``(N, h, w, C)`` -> ``(N, h, w, C)``.
    """

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.dwconv = nnx.Conv(
            channels,
            channels,
            (3, 3),
            padding="SAME",
            feature_group_count=channels,
            use_bias=False,
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + jax.nn.silu(self.bn(self.dwconv(x)))


class FacialCBAM(nnx.Module):
    """Facial CBAM: channel -> facial-region (x landmark mask) -> multi-scale spatial -> enhancer.

    Each stage is optional (``None`` attribute when switched off, so the parameter tree shows the ablation).
    x: ``(N, h, w, C)``, landmarks ``(N, 68, 2)`` -> ``(N, h, w, C)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        use_channel: bool = True,
        use_region: bool = True,
        use_landmark_mask: bool = True,
        use_spatial: bool = True,
        use_enhancer: bool = True,
        num_regions: int = 8,
        reduction: int = 16,
        landmark_sigma: float = 0.5,
        rngs: nnx.Rngs,
    ):
        self.channel = ChannelAttention(channels, reduction=reduction, rngs=rngs) if use_channel else None
        self.region = (
            FacialRegionAttention(
                channels,
                num_regions=num_regions,
                use_landmark_mask=use_landmark_mask,
                landmark_sigma=landmark_sigma,
                rngs=rngs,
            )
            if use_region
            else None
        )
        self.spatial = MultiScaleSpatialAttention(rngs=rngs) if use_spatial else None
        self.enhancer = FacialEnhancer(channels, rngs=rngs) if use_enhancer else None

    def attend(self, x: jax.Array, landmarks: jax.Array | None = None) -> jax.Array:
        """The three attention stages (channel -> region -> spatial): paper 1's "facial CBAM"."""
        if self.channel is not None:
            x = self.channel(x)
        if self.region is not None:
            x = self.region(x, landmarks)
        if self.spatial is not None:
            x = self.spatial(x)
        return x

    def refine(self, x: jax.Array) -> jax.Array:
        """The facial enhancer (identity when switched off): the refinement stage of paper 1's Fig. 2."""
        return self.enhancer(x) if self.enhancer is not None else x

    def __call__(self, x: jax.Array, landmarks: jax.Array | None = None) -> jax.Array:
        return self.refine(self.attend(x, landmarks))


class TemporalSelfAttention(nnx.Module):
    """Pre-norm residual multi-head self-attention over the frame axis: ``x + MHSA(LN(x))``.

    x: ``(B, T, d)`` -> ``(B, T, d)``. Dropout on the attention weights follows ``model.train()/eval()``.
    """

    def __init__(self, d_model: int, *, num_heads: int = 8, dropout: float = 0.0, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=num_heads,
            in_features=d_model,
            dropout_rate=dropout,
            decode=False,
            deterministic=False,  # train mode until model.eval(), like nnx.Dropout
            attention_fn=f32_softmax_attention,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.attn(self.norm(x))
