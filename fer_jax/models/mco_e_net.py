"""MCO-E Net (paper 2): RGB + event single-eye expression recognition.

``rgb`` ``(B, m, S, S, 3)`` and ``event`` ``(B, m, S, S, C_ev)`` -> ResNet-18 per modality -> tokens ->
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

Output dict: ``logits`` ``(B, classes)``; ``aux_loss`` = ``orthogonal_weight`` x eq. 16 on the
router's last layer (0 without HCE-MoE); ``stats``: ``expert_weights`` and ``router_probs``
``(B, N_e)`` with HCE-MoE, ``mcib_gate`` ``(B,)`` (token-mean alpha) with MCIB.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.models import hce_moe, mco_mamba
from fer_jax.models.resnet import resnet18

HEADS = ("moe", "fc", "mlp")
TOKENIZATIONS = ("spatial", "reference")
FUSIONS = ("mcib", "add")


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


def _load_weights(module: nnx.Module, directory: str) -> None:
    if directory:
        from fer_jax.convert import load_backbone_into  # heavy and optional: only when asked

        load_backbone_into(module, directory)


class MCOENet(nnx.Module):
    """The paper's model; every ablation of Tables 2, 5-8 is a constructor argument (see configs/see.py)."""

    def __init__(
        self,
        *,
        num_classes: int = 7,
        modalities: tuple[str, ...] = ("rgb", "event"),
        event_channels: int = 3,
        num_frames: int = 2,
        image_size: int = 100,
        tokenization: str = "spatial",
        token_width: int = 4,
        d_model: int = 128,
        d_state: int = 16,
        expand: int = 2,
        dt_rank: int | str = "auto",
        scan_method: str = "auto",
        use_mamba: bool = True,
        mamba_residual: bool = True,
        mjos: dict | None = None,
        fusion: str = "mcib",
        mcib: dict | None = None,
        neck: str = "none",
        neck_dim: int = 1024,
        neck_dropout: float = 0.5,
        head: str = "moe",
        moe: dict | None = None,
        mlp_hidden: int = 512,
        orthogonal_weight: float = 1.0,
        backbone_weights: dict | None = None,
        backbone_width: int = 64,
        rngs: nnx.Rngs,
    ):
        if tokenization not in TOKENIZATIONS:
            raise ValueError(f"model.tokenization must be one of {TOKENIZATIONS}, got {tokenization!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"model.fusion must be one of {FUSIONS}, got {fusion!r}")
        if head not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {head!r}")
        if neck not in ("none", "flatten"):
            raise ValueError(f"model.neck must be 'none' or 'flatten', got {neck!r}")
        self.modalities = tuple(modalities)
        self.tokenization, self.fusion_kind, self.head_kind, self.neck_kind = tokenization, fusion, head, neck
        self.orthogonal_weight = float(orthogonal_weight)
        self.token_width = token_width
        weights = backbone_weights or {}
        in_ch = {"rgb": 3, "event": event_channels}

        # -- tokenisation ---------------------------------------------------------------------------
        if tokenization == "spatial":
            self.backbones = nnx.Dict(
                {
                    m: resnet18(in_channels=in_ch[m], num_classes=None, width=backbone_width, rngs=rngs)
                    for m in self.modalities
                }
            )
            feat = 8 * backbone_width  # 512 for the torchvision ResNet-18
            side = -(-image_size // 32)
            self.num_tokens = num_frames * side * side
        else:
            if 2000 % token_width:
                raise ValueError(f"model.token_width must divide 2000, got {token_width}")
            self.backbones = nnx.Dict(
                {
                    f"{m}_{pos}": resnet18(
                        in_channels=in_ch[m], num_classes=1000, width=backbone_width, rngs=rngs
                    )
                    for m in self.modalities
                    for pos in ("first", "last")
                }
            )
            feat = token_width
            self.num_tokens = 2000 // token_width
        for name, backbone in self.backbones.items():
            _load_weights(backbone, weights.get(name.split("_")[0], ""))
        self.token_proj = nnx.Dict(
            {m: nnx.Linear(feat, d_model, rngs=rngs) for m in self.modalities} if feat != d_model else {}
        )

        # -- MCO-Mamba ------------------------------------------------------------------------------
        mj = dict(mjos or {})
        self.mamba = (
            mco_mamba.MCOMamba(
                d_model,
                modalities=self.modalities,
                mode=mj.get("mode", "fuse"),
                params=mj.get("params", "BC"),
                source=mj.get("source", "param"),
                tied=mj.get("tied", False),
                bias=mj.get("bias", True),
                residual=mamba_residual,
                d_state=d_state,
                expand=expand,
                dt_rank=dt_rank,
                scan_method=scan_method,
                rngs=rngs,
            )
            if use_mamba
            else nnx.data(None)
        )
        mc = dict(mcib or {})
        two = len(self.modalities) == 2
        self.mcib = (
            mco_mamba.MCIB(
                d_model,
                num_heads=mc.get("num_heads", 2),
                gate_on=mc.get("gate_on", "input"),
                residual=mc.get("residual", False),
                rngs=rngs,
            )
            if two and fusion == "mcib"
            else nnx.data(None)
        )

        # -- neck + head ----------------------------------------------------------------------------
        d_head = d_model
        if neck == "flatten":  # official: Linear(500*4 -> 1024) + GELU + Dropout(0.5), one token
            self.neck = nnx.Linear(self.num_tokens * d_model, neck_dim, rngs=rngs)
            self.neck_dropout = nnx.Dropout(neck_dropout, rngs=rngs)
            d_head = neck_dim
        else:
            self.neck = nnx.data(None)
        mo = dict(moe or {})
        if head == "moe":
            self.head = hce_moe.HCEMoE(
                d_head,
                num_classes,
                num_experts=mo.get("num_experts", 8),
                top_k=mo.get("top_k", 2),
                expert_types=parse_expert_types(mo.get("expert_types", hce_moe.EXPERT_TYPES)),
                router_hidden=mo.get("router_hidden", 512),
                router_heads=mo.get("router_heads", 4),
                attention_heads=mo.get("attention_heads", 2),
                deep_depth=mo.get("deep_depth", 5),
                deep_dropout=mo.get("deep_dropout", 0.5),
                deep_res_coef=mo.get("deep_res_coef", 1.0),
                focal_hidden=mo.get("focal_hidden", 512),
                rngs=rngs,
            )
        elif head == "fc":  # Table 2 row F: "replacing HCE-MoE with a fully-connected layer"
            self.head = nnx.Linear(d_head, num_classes, rngs=rngs)
        else:  # Table 8 row A: an MLP instead of HCE-MoE
            self.head = nnx.Sequential(
                nnx.Linear(d_head, mlp_hidden, rngs=rngs),
                jax.nn.gelu,
                nnx.Linear(mlp_hidden, num_classes, rngs=rngs),
            )

    # ----------------------------------------------------------------------------------------------
    def tokens(self, m: str, x: jax.Array) -> jax.Array:
        """One modality's frames ``(B, m, S, S, C)`` -> tokens ``(B, num_tokens, d_model)``."""
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
        """``rgb`` ``(B, m, S, S, 3)``, ``event`` ``(B, m, S, S, C_ev)`` -> output dict (module docstring)."""
        inputs = {"rgb": rgb, "event": event}
        toks = [self.tokens(m, inputs[m]) for m in self.modalities]
        ys = list(self.mamba(*toks)) if self.mamba is not None else toks
        stats = {}
        if len(ys) == 1:
            h = ys[0]
        elif self.mcib is not None:
            h, alpha = self.mcib(*ys)
            stats["mcib_gate"] = alpha.mean(axis=(1, 2))
        else:  # Table 2 row E: "change the fusion method to feature addition"
            h = ys[0] + ys[1]
        if self.neck is not None:
            h = self.neck_dropout(jax.nn.gelu(self.neck(h.reshape(h.shape[0], -1))))[:, None, :]
        aux = jnp.zeros((), jnp.float32)
        if self.head_kind == "moe":
            logits, moe_stats = self.head(h)
            stats.update(moe_stats)
            aux = self.orthogonal_weight * self.head.orthogonal_loss()
        else:
            logits = self.head(h.mean(axis=1))
        return {"logits": logits.astype(jnp.float32), "aux_loss": aux, "stats": stats}


def from_config(config, *, rngs: nnx.Rngs) -> MCOENet:
    """Builds the model ``config.model`` describes (fields documented in configs/see.py)."""
    mc = config.model
    weights = {
        "rgb": mc.get("rgb_backbone_weights", "") or mc.get("backbone_weights", ""),
        "event": mc.get("event_backbone_weights", "") or mc.get("backbone_weights", ""),
    }
    return MCOENet(
        num_classes=mc.num_classes,
        modalities=parse_modalities(mc.get("modalities", "rgb+event")),
        event_channels=mc.get("event_channels", 3),
        num_frames=config.data.get("num_frames", 2),
        image_size=config.data.get("image_size", 100),
        tokenization=mc.get("tokenization", "spatial"),
        token_width=mc.get("token_width", 4),
        d_model=mc.get("d_model", 128),
        d_state=mc.get("d_state", 16),
        expand=mc.get("expand", 2),
        dt_rank=mc.get("dt_rank", "auto"),
        scan_method=mc.get("scan_method", "auto"),
        use_mamba=mc.get("use_mamba", True),
        mamba_residual=mc.get("mamba_residual", True),
        mjos=dict(mc.get("mjos", {})),
        fusion=mc.get("fusion", "mcib"),
        mcib=dict(mc.get("mcib", {})),
        neck=mc.get("neck", "none"),
        neck_dim=mc.get("neck_dim", 1024),
        neck_dropout=mc.get("neck_dropout", 0.5),
        head=mc.get("head", "moe"),
        moe=dict(mc.get("moe", {})),
        mlp_hidden=mc.get("mlp_hidden", 512),
        orthogonal_weight=mc.get("orthogonal_weight", 1.0),
        backbone_weights=weights,
        backbone_width=mc.get("backbone_width", 64),
        rngs=rngs,
    )


def input_spec(config) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``rgb`` ``(m, S, S, 3)`` and ``event`` ``(m, S, S, C_ev)`` float32, whatever the modalities."""
    m = config.data.get("num_frames", 2)
    s = config.data.get("image_size", 100)
    c_ev = config.model.get("event_channels", 3)
    return {"rgb": ((m, s, s, 3), np.float32), "event": ((m, s, s, c_ev), np.float32)}
