"""MCO-E Net (paper 2): RGB + event single-eye expression recognition.

``rgb`` ``(B, m, H, W, 3)`` and ``event`` ``(B, m, H, W, C_ev)`` -> ResNet-18 per modality -> tokens ->
MCO-Mamba (MJOS bidirectional scans, :mod:`fer_jax.models.mco_mamba`) -> fusion (MCIB or addition) ->
head (HCE-MoE of :mod:`fer_jax.models.hce_moe`, or a linear / MLP head for the ablations) -> 7 logits.

Tokenisation (``config.model.tokenization``):

- ``"spatial"`` (default): one ResNet-18 feature extractor per modality, shared by the m frames; the
  last maps ``(B*m, h, w, 512)`` (4x4 at 100 px) are flattened into ``m*h*w`` tokens and projected to
  ``d_model``.
- ``"reference"`` (official code): four ImageNet-headed ResNet-18s (first / last frame x modality); the
  two 1000-d logits of a modality are concatenated and reshaped to ``2000 / token_width`` tokens of
  width ``token_width`` = 4 (500 x 4), projected to ``d_model`` only when it differs. The official code
  then flattens the fused tokens into a 1024-d vector (``neck="flatten"``) before the MoE.

Modalities (``config.model.modalities`` = "rgb+event" | "rgb" | "event"): with one modality the other
input is accepted and ignored (the input spec does not change, so pipelines and the demo's RGB-only
ablation need no change), MCO-Mamba reduces to one BiMamba and no fusion is applied.

Settings: :class:`MCOENetConfig` (nested :class:`MJOSConfig`, :class:`MCIBConfig`, :class:`MoEConfig`),
filled from ``config.model`` by :func:`model_config`. Construction reads no file: the caller loads
converted ResNet-18 weights into :func:`pretrained_targets`.

Output dict: ``logits`` ``(B, classes)``; ``aux_loss`` = ``orthogonal_weight`` x eq. 16 on the
router's last layer (0 without HCE-MoE); ``stats``: ``expert_weights`` and ``router_probs``
``(B, N_e)`` with HCE-MoE, ``mcib_gate`` ``(B,)`` (token-mean alpha) with MCIB.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.models import hce_moe, mco_mamba, torch_init
from fer_jax.models.compute import ComputeConfig, call, configure, forward
from fer_jax.models.config import from_config_dict, is_weights_dir
from fer_jax.models.resnet import resnet18

HEADS = ("moe", "fc", "mlp")
TOKENIZATIONS = ("spatial", "reference")
FUSIONS = ("mcib", "add")
DATA_KEYS = ("num_frames", "image_size", "image_width")  # MCOENetConfig fields that come from config.data


def parse_modalities(spec: str) -> tuple[str, ...]:
    """``"rgb+event"`` -> ``("rgb", "event")``; raises ValueError on anything else."""
    mods = tuple(s.strip() for s in spec.split("+") if s.strip())
    if mods not in (("rgb", "event"), ("rgb",), ("event",)):
        raise ValueError(f"model.modalities must be 'rgb+event', 'rgb' or 'event', got {spec!r}")
    return mods


def parse_expert_types(spec) -> tuple[str, ...]:
    """``"deep,attention,focal"`` (or a sequence) -> tuple of expert type names."""
    if isinstance(spec, str):
        spec = spec.split(",")
    return tuple(s.strip() for s in spec if s.strip())


@dataclasses.dataclass(frozen=True)
class MJOSConfig:
    """MJOS, the joint optimisation of the SSM parameters across modalities (``config.model.mjos``)."""

    mode: str = "fuse"  # fuse | share | exchange | none
    params: str = "BC"  # Table 7 row K
    source: str = "param"  # param (eq. 5) | x_dbl (official code)
    tied: bool = False  # one projection added to both modalities (official code)
    bias: bool = True  # the b of eq. 5
    grad: str = "autodiff"  # autodiff | authors (the official hand-written backward: mco_mamba docstring)


@dataclasses.dataclass(frozen=True)
class MCIBConfig:
    """MCIB cross-attention fusion (``config.model.mcib``)."""

    num_heads: int = 2
    gate_on: str = "input"  # eq. 8 on the inputs; "projected" as the official code
    residual: bool = False  # official code adds (p_rgb + p_event) / 2


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    """HCE-MoE head (``config.model.moe``); ``expert_types`` ("deep,attention,focal" or a sequence) are
    assigned cyclically to the experts."""

    num_experts: int = 8
    top_k: int = 2
    expert_types: str | tuple[str, ...] = ",".join(hce_moe.EXPERT_TYPES)
    router_hidden: int = 512  # official MLP 1024-512-8
    router_heads: int = 4
    attention_heads: int = 2
    deep_depth: int = 5  # L; official code
    deep_dropout: float = 0.5
    deep_res_coef: float = 1.0  # plain residual; the official code learns one from 0.3
    focal_hidden: int = 512


@dataclasses.dataclass(frozen=True)
class MCOENetConfig(ComputeConfig):
    """Every setting of MCO-E Net with its default (the fields of configs/see.py's ``config.model``).

    ``num_frames`` (m), ``image_size`` and ``image_width`` come from ``config.data`` (:func:`model_config`); the
    ``*backbone_weights`` directories are never read by the model: the caller loads them into
    :func:`pretrained_targets` (``rgb_`` / ``event_backbone_weights`` override ``backbone_weights`` per
    branch; "" or "none" = random init).
    """

    name: str = "mco_e_net"
    num_classes: int = 7
    modalities: str | tuple[str, ...] = "rgb+event"
    event_channels: int = 3  # B; SEE's event frames are 3-channel JPEGs
    num_frames: int = 2  # m, from config.data
    image_size: int = 100  # from config.data: H (the side of square frames)
    image_width: int = 0  # from config.data: W; 0 = square (the authors' Resize(100): 100 x 133)
    tokenization: str = "spatial"  # spatial | reference
    token_width: int = 4  # reference tokenisation: 2000 logits -> 500 tokens of width 4
    backbone_classes: int = 1000  # reference tokenisation: logits per ResNet-18 (ImageNet's 1000)
    d_model: int = 128
    d_state: int = 16
    expand: int = 2
    dt_rank: int | str = "auto"
    scan_method: str = "auto"
    use_mamba: bool = True
    mamba_residual: bool = True  # tokens + MCO-Mamba output, as the official code
    mjos: MJOSConfig = dataclasses.field(default_factory=MJOSConfig)
    fusion: str = "mcib"  # mcib | add
    mcib: MCIBConfig = dataclasses.field(default_factory=MCIBConfig)
    neck: str = "none"  # none | flatten (official: Linear(tokens*d -> neck_dim) + GELU + dropout)
    neck_dim: int = 1024
    neck_dropout: float = 0.5
    head: str = "moe"  # moe | fc | mlp
    mlp_hidden: int = 512
    moe: MoEConfig = dataclasses.field(default_factory=MoEConfig)
    orthogonal_weight: float = 1.0  # lambda of eq. 17
    gelu: str = "tanh"  # tanh (jax.nn.gelu's default) | exact (torch nn.GELU, the official code)
    layer_norm_eps: float = 1e-6  # flax's default; torch's nn.LayerNorm (official code) uses 1e-5
    init: str = "flax"  # flax | torch: torch's defaults for token_proj, MCIB, neck and head (torch_init)
    backbone_width: int = 64  # ResNet-18 first-stage channels; 64 = torchvision
    backbone_weights: str = ""
    rgb_backbone_weights: str = ""
    event_backbone_weights: str = ""
    # a converted mco_e_net_reference folder (python -m fer_jax.convert --arch mco_e_net_reference): the
    # WHOLE model starts from it (the authors' trained weights) instead of ImageNet backbones
    weights: str = ""

    @property
    def frame_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the input frames (``image_width`` 0: square)."""
        return self.image_size, self.image_width or self.image_size

    def weights_for(self, modality: str) -> str:
        """The weights directory of one branch: its own setting, else ``backbone_weights``."""
        own = {"rgb": self.rgb_backbone_weights, "event": self.event_backbone_weights}[modality]
        return own or self.backbone_weights


class MCOENet(nnx.Module):
    """The paper's model; every ablation of Tables 2, 5-8 is a constructor argument (see configs/see.py)."""

    def __init__(self, config: MCOENetConfig | None = None, *, rngs: nnx.Rngs, **overrides: Any):
        """``config`` (default :class:`MCOENetConfig`) with keyword ``overrides`` of its fields."""
        cfg = dataclasses.replace(config or MCOENetConfig(), **overrides)
        tokenization, fusion, head, neck = cfg.tokenization, cfg.fusion, cfg.head, cfg.neck
        d_model, token_width, backbone_width = cfg.d_model, cfg.token_width, cfg.backbone_width
        modalities = parse_modalities(cfg.modalities) if isinstance(cfg.modalities, str) else cfg.modalities
        if tokenization not in TOKENIZATIONS:
            raise ValueError(f"model.tokenization must be one of {TOKENIZATIONS}, got {tokenization!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"model.fusion must be one of {FUSIONS}, got {fusion!r}")
        if head not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {head!r}")
        if cfg.init not in ("flax", "torch"):
            raise ValueError(f"model.init must be 'flax' or 'torch', got {cfg.init!r}")
        if neck not in ("none", "flatten"):
            raise ValueError(f"model.neck must be 'none' or 'flatten', got {neck!r}")
        self.modalities = tuple(modalities)
        self.tokenization, self.fusion_kind, self.head_kind, self.neck_kind = tokenization, fusion, head, neck
        self.orthogonal_weight = float(cfg.orthogonal_weight)
        self.token_width = token_width
        hce_moe.gelu_fn(cfg.gelu)  # fail early on a bad name
        self.gelu = cfg.gelu
        self.remat = "none"  # around MCO-Mamba (the backbones remat per stage); set by compute.configure
        in_ch = {"rgb": 3, "event": cfg.event_channels}

        # -- tokenisation ---------------------------------------------------------------------------
        if tokenization == "spatial":
            self.backbones = nnx.Dict(
                {
                    m: resnet18(in_channels=in_ch[m], num_classes=None, width=backbone_width, rngs=rngs)
                    for m in self.modalities
                }
            )
            feat = 8 * backbone_width  # 512 for the torchvision ResNet-18
            rows, cols = (-(-side // 32) for side in cfg.frame_hw)
            self.num_tokens = cfg.num_frames * rows * cols
        else:
            logits = 2 * cfg.backbone_classes  # first + last frame
            if logits % token_width:
                raise ValueError(f"model.token_width must divide {logits}, got {token_width}")
            self.backbones = nnx.Dict(
                {
                    f"{m}_{pos}": resnet18(
                        in_channels=in_ch[m],
                        num_classes=cfg.backbone_classes,
                        width=backbone_width,
                        rngs=rngs,
                    )
                    for m in self.modalities
                    for pos in ("first", "last")
                }
            )
            feat = token_width
            self.num_tokens = logits // token_width
        self.token_proj = nnx.Dict(
            {m: nnx.Linear(feat, d_model, rngs=rngs) for m in self.modalities} if feat != d_model else {}
        )

        # -- MCO-Mamba ------------------------------------------------------------------------------
        mj, mc, mo = cfg.mjos, cfg.mcib, cfg.moe
        self.mamba = (
            mco_mamba.MCOMamba(
                d_model,
                modalities=self.modalities,
                **dataclasses.asdict(mj),  # mode, params, source, tied, bias, grad: MCOMamba's own names
                residual=cfg.mamba_residual,
                d_state=cfg.d_state,
                expand=cfg.expand,
                dt_rank=cfg.dt_rank,
                scan_method=cfg.scan_method,
                rngs=rngs,
            )
            if cfg.use_mamba
            else nnx.data(None)
        )
        two = len(self.modalities) == 2
        self.mcib = (
            mco_mamba.MCIB(d_model, **dataclasses.asdict(mc), rngs=rngs)
            if two and fusion == "mcib"
            else nnx.data(None)
        )

        # -- neck + head ----------------------------------------------------------------------------
        d_head = d_model
        if neck == "flatten":  # official: Linear(500*4 -> 1024) + GELU + Dropout(0.5), one token
            self.neck = nnx.Linear(self.num_tokens * d_model, cfg.neck_dim, rngs=rngs)
            self.neck_dropout = nnx.Dropout(cfg.neck_dropout, rngs=rngs)
            d_head = cfg.neck_dim
        else:
            self.neck = nnx.data(None)
        if head == "moe":
            # MoEConfig's fields are HCEMoE's keyword names; only the expert list needs parsing
            moe_kwargs = {**dataclasses.asdict(mo), "expert_types": parse_expert_types(mo.expert_types)}
            moe_kwargs.update(gelu=cfg.gelu, layer_norm_eps=cfg.layer_norm_eps)
            self.head = hce_moe.HCEMoE(d_head, cfg.num_classes, **moe_kwargs, rngs=rngs)
        elif head == "fc":  # Table 2 row F: "replacing HCE-MoE with a fully-connected layer"
            self.head = nnx.Linear(d_head, cfg.num_classes, rngs=rngs)
        else:  # Table 8 row A: an MLP instead of HCE-MoE
            self.head = nnx.Sequential(
                nnx.Linear(d_head, cfg.mlp_hidden, rngs=rngs),
                hce_moe.gelu_fn(cfg.gelu),
                nnx.Linear(cfg.mlp_hidden, cfg.num_classes, rngs=rngs),
            )

        if cfg.init == "torch":  # the Mamba already draws torch's defaults; backbones get ImageNet weights
            for part in (self.token_proj, self.mcib, self.neck, self.head):
                if part is not None:
                    torch_init.torch_default_init(part, rngs)
        configure(self, cfg)

    # ----------------------------------------------------------------------------------------------
    def tokens(self, m: str, x: jax.Array) -> jax.Array:
        """One modality's frames ``(B, m, H, W, C)`` -> tokens ``(B, num_tokens, d_model)``."""
        b, t = x.shape[:2]
        if self.tokenization == "spatial":
            maps = self.backbones[m](x.reshape(b * t, *x.shape[2:]))  # (B*m, h, w, 512)
            tok = maps.reshape(b, -1, maps.shape[-1])
        else:  # official: first and last frame, each through its own ImageNet-headed ResNet-18
            logits = jnp.concatenate(
                [self.backbones[f"{m}_first"](x[:, 0]), self.backbones[f"{m}_last"](x[:, -1])], axis=-1
            )
            tok = logits.reshape(b, -1, self.token_width)
        return self.token_proj[m](tok) if m in self.token_proj else tok

    def __call__(self, rgb: jax.Array, event: jax.Array) -> dict:
        """``rgb`` ``(B, m, H, W, 3)``, ``event`` ``(B, m, H, W, C_ev)`` -> output dict (module docstring),
        computed in ``model.dtype`` (``fer_jax.models.compute.forward``)."""
        return forward(self, type(self)._forward, rgb, event)

    def _forward(self, rgb: jax.Array, event: jax.Array) -> dict:
        inputs = {"rgb": rgb, "event": event}
        toks = [self.tokens(m, inputs[m]) for m in self.modalities]
        ys = list(call(self.mamba, *toks, remat=self.remat)) if self.mamba is not None else toks
        stats = {}
        if len(ys) == 1:
            h = ys[0]
        elif self.mcib is not None:
            h, alpha = self.mcib(*ys)
            stats["mcib_gate"] = alpha.mean(axis=(1, 2))
        else:  # Table 2 row E: "change the fusion method to feature addition"
            h = ys[0] + ys[1]
        if self.neck is not None:
            h = self.neck_dropout(hce_moe.gelu_fn(self.gelu)(self.neck(h.reshape(h.shape[0], -1))))[
                :, None, :
            ]
        aux = jnp.zeros((), jnp.float32)
        if self.head_kind == "moe":
            logits, moe_stats = self.head(h)
            stats.update(moe_stats)
            aux = self.orthogonal_weight * self.head.orthogonal_loss()
        else:
            logits = self.head(h.mean(axis=1))
        return {"logits": logits.astype(jnp.float32), "aux_loss": aux, "stats": stats}


def model_config(config) -> MCOENetConfig:
    """``config.model`` (+ ``config.data.num_frames`` / ``image_size`` / ``image_width``) as an :class:`MCOENetConfig`;
    ValueError naming an unknown or mistyped key (``model.moe.num_expert``)."""
    data = config.get("data") or {}
    derived = {k: (f"data.{k}", data[k]) for k in DATA_KEYS if k in data}
    return from_config_dict(MCOENetConfig, config.model, where="model", derived=derived)


def from_config(config, *, rngs: nnx.Rngs) -> MCOENet:
    """Builds the model ``config.model`` describes (fields: :class:`MCOENetConfig`, configs/see.py).

    Reads no file: backbone weights are loaded by the caller into :func:`pretrained_targets`.
    """
    return MCOENet(model_config(config), rngs=rngs)


def pretrained_targets(model: MCOENet, config) -> list[tuple[nnx.Module, str]]:
    """``(backbone, directory)`` for each ResNet-18 whose branch has weights: ``model.backbones[m]``
    (spatial tokenisation) or ``[f"{m}_first"]`` / ``[f"{m}_last"]`` (reference), ``m`` in rgb / event,
    directory ``{m}_backbone_weights`` or else ``backbone_weights`` ("" / "none": none)."""
    cfg = model_config(config)
    return targets_for(model, cfg)


def targets_for(model: MCOENet, cfg: MCOENetConfig) -> list[tuple[nnx.Module, str]]:
    """:func:`pretrained_targets` of settings ``cfg``: ``[(model, cfg.weights)]`` when a whole converted
    model is named, else the backbones with weights."""
    if is_weights_dir(cfg.weights):
        return [(model, cfg.weights)]
    targets = []
    for name, backbone in model.backbones.items():
        weights = cfg.weights_for(name.split("_")[0])
        if is_weights_dir(weights):
            targets.append((backbone, weights))
    return targets


def input_spec(config) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``rgb`` ``(m, H, W, 3)`` and ``event`` ``(m, H, W, C_ev)`` float32, whatever the modalities
    (H x W = ``data.image_size`` x ``data.image_width``; S x S when the width is 0)."""
    return spec_of(model_config(config))


def spec_of(cfg: MCOENetConfig) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """:func:`input_spec` of settings ``cfg``."""
    (h, w), m, c_ev = cfg.frame_hw, cfg.num_frames, cfg.event_channels
    return {"rgb": ((m, h, w, 3), np.float32), "event": ((m, h, w, c_ev), np.float32)}
