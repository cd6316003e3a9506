"""MambaFER (paper 1, Table 1): EfficientNetV2-S per frame -> facial CBAM -> Mamba blocks -> MHSA -> MLP.

Shapes, stage by stage (Table 1, channels-last; ``C`` = backbone features, 1280 at width 1.0)::

    frames     (B, T, H, W, 3)  ImageNet-normalised;  landmarks (B, T, 68, 2)  (x, y) in [0, 1]
    backbone   (B*T, h, w, C)   EfficientNetV2-S features (stride 32: 112 -> 4x4)
    cbam       (B*T, h, w, C)   channel -> facial-region x landmark mask -> multi-scale spatial -> enhancer
    pool       (B, T, C)        global average pooling, reshaped to a sequence
    proj       (B, T, d_model)  temporal linear projection
    ssm        (B, T, d_model)  num_ssm_blocks pre-norm residual Mamba blocks (uni- or bidirectional)
    mhsa       (B, T, d_model)  pre-norm residual temporal multi-head self-attention
    mean       (B, d_model)     final LayerNorm, average over frames
    logits     (B, K)           MLP d_model -> 512 -> 256 -> 128 -> K with dropout

Settings: :class:`MambaFERConfig` (filled from ``config.model`` by :func:`model_config`). Every component
is switchable: ``use_cbam`` (channel + region + spatial attention),
``use_region_attention``, ``use_landmark_mask``, ``use_spatial_attention``, ``use_enhancer``,
``num_ssm_blocks`` (0 = no SSM), ``bidirectional``, ``use_mhsa``. Frames whose landmarks are all zero use
the aligned-face template ``fer_jax.data.constants.TEMPLATE_68``. Construction reads no file: the
caller loads converted backbone weights into :func:`pretrained_targets`.

Grad-CAM hooks: :meth:`MambaFER.features` returns the three maps of paper 1's Fig. 2 - ``backbone``,
``cbam`` (after the channel, region and spatial attention) and ``refined`` (after the facial enhancer,
the map that is pooled) - and :meth:`MambaFER.classify_from` continues the forward pass from any of them,
so the class logit can be differentiated with respect to it (``fer_jax.interpret.gradcam``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.data.constants import NUM_LANDMARKS
from fer_jax.models.attention import FacialCBAM, TemporalSelfAttention, fill_missing_landmarks
from fer_jax.models.compute import ComputeConfig, call, configure, forward
from fer_jax.models.config import from_config_dict, is_weights_dir
from fer_jax.models.efficientnet_v2 import efficientnet_v2_s
from fer_jax.models.ssm import MambaLayer

# Grad-CAM layers, in forward order; "refined" is the enhancer's output (paper 1, Fig. 2's refinement)
LAYERS = ("backbone", "cbam", "refined")


class MLPHead(nnx.Module):
    """``d_in -> hidden[0] -> ... -> num_classes`` with ReLU and dropout after each hidden layer.

    x ``(B, d_in)`` -> ``(B, num_classes)``.
    """

    def __init__(self, d_in: int, hidden: Sequence[int], num_classes: int, *, dropout: float, rngs: nnx.Rngs):
        dims = [d_in, *hidden]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(dims[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = self.dropout(jax.nn.relu(layer(x)))
        return self.out(x)


@dataclasses.dataclass(frozen=True)
class MambaFERConfig(ComputeConfig):
    """Every setting of MambaFER with its default (``config.model`` of configs/dfew.py; see module docstring).

    ``backbone_weights``: a directory written by ``python -m fer_jax.convert`` ("" or "none": random
    init); the model never reads it, the caller loads it into :func:`pretrained_targets`.
    """

    name: str = "mambafer"
    num_classes: int = 7
    backbone_width: float = 1.0
    backbone_depth: float = 1.0
    stochastic_depth_prob: float = 0.2
    backbone_weights: str = ""
    d_model: int = 1280
    num_ssm_blocks: int = 2
    bidirectional: bool = False
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    scan_method: str = "auto"
    use_cbam: bool = True
    use_region_attention: bool = True
    use_landmark_mask: bool = True
    use_spatial_attention: bool = True
    use_enhancer: bool = True
    num_regions: int = 8
    cbam_reduction: int = 16
    landmark_sigma: float = 0.5
    use_mhsa: bool = True
    mhsa_heads: int = 8
    mlp_dims: tuple[int, ...] = (512, 256, 128)
    dropout: float = 0.3


class MambaFER(nnx.Module):
    """Paper 1's model; ``model(frames, landmarks) -> {"logits": (B, num_classes)}`` (see module docstring).

    ``MambaFER(config, rngs=...)`` or ``MambaFER(rngs=..., d_model=128, ...)``: keyword overrides replace
    fields of ``config`` (default :class:`MambaFERConfig`).
    """

    def __init__(self, config: MambaFERConfig | None = None, *, rngs: nnx.Rngs, **overrides: Any):
        cfg = dataclasses.replace(config or MambaFERConfig(), **overrides)
        num_classes, d_model, num_ssm_blocks = cfg.num_classes, cfg.d_model, cfg.num_ssm_blocks
        use_cbam, use_enhancer = cfg.use_cbam, cfg.use_enhancer
        use_mhsa, mhsa_heads = cfg.use_mhsa, cfg.mhsa_heads
        if num_ssm_blocks < 0:
            raise ValueError(f"num_ssm_blocks must be >= 0, got {num_ssm_blocks}")
        if use_mhsa and d_model % mhsa_heads:
            raise ValueError(f"d_model {d_model} is not divisible by mhsa_heads {mhsa_heads}")
        self.num_classes = num_classes
        self.backbone = efficientnet_v2_s(
            num_classes=None,
            width_mult=cfg.backbone_width,
            depth_mult=cfg.backbone_depth,
            stochastic_depth_prob=cfg.stochastic_depth_prob,
            rngs=rngs,
        )
        channels = self.backbone.num_features
        self.num_features = channels
        # use_cbam switches the three attention stages (channel always included); the enhancer is separate
        if use_cbam or use_enhancer:
            self.cbam = FacialCBAM(
                channels,
                use_channel=use_cbam,
                use_region=use_cbam and cfg.use_region_attention,
                use_landmark_mask=cfg.use_landmark_mask,
                use_spatial=use_cbam and cfg.use_spatial_attention,
                use_enhancer=use_enhancer,
                num_regions=cfg.num_regions,
                reduction=cfg.cbam_reduction,
                landmark_sigma=cfg.landmark_sigma,
                rngs=rngs,
            )
        else:
            self.cbam = nnx.data(None)
        self.proj = nnx.Linear(channels, d_model, rngs=rngs)
        self.ssm = nnx.List(
            [
                MambaLayer(
                    d_model,
                    bidirectional=cfg.bidirectional,
                    d_state=cfg.d_state,
                    d_conv=cfg.d_conv,
                    expand=cfg.expand,
                    scan_method=cfg.scan_method,
                    rngs=rngs,
                )
                for _ in range(num_ssm_blocks)
            ]
        )
        self.mhsa = (
            TemporalSelfAttention(d_model, num_heads=mhsa_heads, dropout=0.0, rngs=rngs)
            if use_mhsa
            else nnx.data(None)
        )
        # final norm before pooling: the pre-norm residual stack leaves its output un-normalised
        self.norm_f = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = MLPHead(d_model, cfg.mlp_dims, num_classes, dropout=cfg.dropout, rngs=rngs)
        self.remat = "none"  # per Mamba block (the backbone remats per stage); set by compute.configure
        configure(self, cfg)

    # -- stages ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_inputs(frames: jax.Array, landmarks: jax.Array) -> None:
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (B, T, H, W, 3), got {frames.shape}")
        if landmarks.shape != (*frames.shape[:2], NUM_LANDMARKS, 2):
            raise ValueError(
                f"landmarks must be {(*frames.shape[:2], NUM_LANDMARKS, 2)}, got {landmarks.shape}"
            )

    @staticmethod
    def _flat_landmarks(landmarks: jax.Array) -> jax.Array:
        b, t = landmarks.shape[:2]
        return fill_missing_landmarks(landmarks.astype(jnp.float32)).reshape(b * t, NUM_LANDMARKS, 2)

    def features(self, frames: jax.Array, landmarks: jax.Array) -> dict[str, jax.Array]:
        """The per-frame maps Grad-CAM explains, each ``(B*T, h, w, C)``: ``backbone``, ``cbam`` (after the
        attention stages) and ``refined`` (after the enhancer). A switched-off stage passes its input on.
        """
        self._check_inputs(frames, landmarks)
        b, t = frames.shape[:2]
        x = self.backbone(frames.reshape(b * t, *frames.shape[2:]))
        if self.cbam is None:
            return {"backbone": x, "cbam": x, "refined": x}
        attended = self.cbam.attend(x, self._flat_landmarks(landmarks))
        return {"backbone": x, "cbam": attended, "refined": self.cbam.refine(attended)}

    def temporal(self, pooled: jax.Array) -> jax.Array:
        """The temporal model and head: pooled frame features ``(B, T, C)`` -> logits ``(B, K)``."""
        x = self.proj(pooled)
        for layer in self.ssm:
            x = call(layer, x, remat=self.remat)
        if self.mhsa is not None:
            x = self.mhsa(x)
        x = jnp.mean(self.norm_f(x), axis=1)
        return self.head(x)

    def classify_from(self, layer: str, fmap: jax.Array, landmarks: jax.Array) -> jax.Array:
        """Continues the forward pass from ``features(...)[layer]``.

        fmap ``(B*T, h, w, C)``, landmarks ``(B, T, 68, 2)`` (they give B and T, and feed the region
        attention when ``layer == "backbone"``) -> logits ``(B, K)``.
        """
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        b, t = landmarks.shape[:2]
        if layer == "backbone" and self.cbam is not None:
            fmap = self.cbam.attend(fmap, self._flat_landmarks(landmarks))
        if layer in ("backbone", "cbam") and self.cbam is not None:
            fmap = self.cbam.refine(fmap)
        pooled = jnp.mean(fmap, axis=(1, 2)).reshape(b, t, fmap.shape[-1])
        return self.temporal(pooled)

    def __call__(self, frames: jax.Array, landmarks: jax.Array) -> dict[str, jax.Array]:
        """Logits ``(B, K)`` float32, computed in ``model.dtype`` (``fer_jax.models.compute.forward``)."""
        return forward(self, type(self)._forward, frames, landmarks)

    def _forward(self, frames: jax.Array, landmarks: jax.Array) -> dict[str, jax.Array]:
        maps = self.features(frames, landmarks)
        logits = self.classify_from("refined", maps["refined"], landmarks)
        return {"logits": logits.astype(jnp.float32)}


# -- registry contract ----------------------------------------------------------------------------------
def model_config(config) -> MambaFERConfig:
    """``config.model`` as a :class:`MambaFERConfig`; ValueError naming an unknown or mistyped key."""
    return from_config_dict(MambaFERConfig, config.model, where="model")


def from_config(config, *, rngs: nnx.Rngs) -> MambaFER:
    """Builds MambaFER from ``config.model`` (missing keys take :class:`MambaFERConfig`'s defaults).

    Reads no file: converted ImageNet backbone weights are loaded by the caller into
    :func:`pretrained_targets`.
    """
    return MambaFER(model_config(config), rngs=rngs)


def pretrained_targets(model: MambaFER, config) -> list[tuple[nnx.Module, str]]:
    """``[(model.backbone, config.model.backbone_weights)]``, or ``[]`` without weights ("" / "none")."""
    weights = model_config(config).backbone_weights
    return [(model.backbone, weights)] if is_weights_dir(weights) else []


def input_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
    """``frames`` ``(T, S, S, 3)`` and ``landmarks`` ``(T, 68, 2)``, both float32, for one clip."""
    t, s = int(config.data.num_frames), int(config.data.image_size)
    return {
        "frames": ((t, s, s, 3), np.float32),
        "landmarks": ((t, NUM_LANDMARKS, 2), np.float32),
    }
