"""The authors' MCO-E Net state dict (hrdhrd/MCO-E-Net, ``MCOE``) -> ``mco_e_net_reference``.

``python -m fer_jax.convert --arch mco_e_net_reference --weights FILE --out DIR`` reads their state dict
(``.pth`` through ``torch.load(weights_only=True)``, or ``.safetensors``), infers the sizes from its
shapes (:func:`config_from_state_dict`; their release: 1000-d ResNet heads, d_model 4, neck 1024, 8
experts), fills the reference model through :func:`key_table` and writes ``DIR/state`` +
``DIR/meta.json`` (with the model settings, so :func:`load` rebuilds the same model).

Mapping (torch key -> NNX path), beside the torchvision tables of :mod:`fer_jax.convert.tables`:

- ``res00`` / ``res01`` / ``res10`` / ``res11`` ``.resnet.*`` -> ``backbones.{rgb,event}_{first,last}``
  (the torchvision ResNet-18 table);
- ``MCO.cross_matrix_mamba.*_{rgb,event}`` -> ``mamba.blocks.{rgb,event}`` (``in_proj``, ``conv1d[_b]``,
  ``x_proj[_b]``, ``dt_proj[_b]``, ``A[_b]_log``, ``D[_b]``, ``out_proj``); ``x_proj_peep`` /
  ``x_proj_Cpeep`` / ``x_proj_b_peep`` / ``x_proj_b_Cpeep`` -> ``mamba.mjos.{B,C}_{f,b}_shared``;
- ``dt_proj_b.bias`` <- ``dt_proj_{m}.bias``: their backward scan reads the FORWARD bias
  (``delta_bias`` of the second ``mamba_inner_fn_no_out_proj`` call), so the stored
  ``dt_proj_b_{m}.bias`` is never read;
- ``A_log_rgb`` / ``A_log_event`` (and the ``A_b_log`` pair) are two ``nn.Parameter`` around ONE
  tensor in their code: equal in any file their model saved; a file holding only one of a pair (a
  deduplicating save) fills both modalities from it, a file whose pair differs is refused;
- ``MCIB.attn.in_proj_weight`` ``(3d, d)`` -> ``mcib.attn.{query,key,value}`` (split, heads reshaped);
  the same for every ``nn.MultiheadAttention`` (router, attention experts);
- ``fusion_proj.0`` -> ``neck``; ``moe.router.{self_attn,norm,mlp.0,mlp.2}`` -> ``head.router.{attn,
  norm,fc1,fc2}``; ``moe.experts.expert_{i}`` -> ``head.experts.{i}`` (focal ``.0`` / ``.2`` ->
  ``conv3`` / ``conv1``; attention ``.attn`` / ``.norm`` / ``.fc``; deep ``.layers.{j}.0`` / ``.2`` ->
  ``up.{j}`` / ``down.{j}``, ``.res_coef``, ``.final_fc`` -> ``head``).

Torch leaves the forward never reads (:data:`UNREAD`: ``output.*``, the Mamba's ``norm_*``,
``fusion_gate.*``, ``in_proj_extra``, ``dt_proj_b_*.bias``, BatchNorm's ``num_batches_tracked``) are
skipped and listed by :func:`convert_state_dict`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.convert import tables
from fer_jax.models import mco_e_net_reference
from fer_jax.models.mco_e_net import MCOENet, MCOENetConfig

ARCH = "mco_e_net_reference"
MAMBA = "MCO.cross_matrix_mamba."
# official module -> (modality, frame) of fer_jax's reference tokenisation (mamba_fusion.MCOE.forward)
BACKBONES = {"res00": "rgb_first", "res01": "rgb_last", "res10": "event_first", "res11": "event_last"}
UNREAD = tuple(
    re.compile(p)
    for p in (
        r"output\.(weight|bias)",  # MCOE.output: built, never called
        MAMBA.replace(".", r"\.") + r"(norm_rgb|norm_event|fusion_gate\.\d+)\.(weight|bias)",
        MAMBA.replace(".", r"\.") + r"in_proj_extra\.(weight|bias)",
        MAMBA.replace(".", r"\.") + r"dt_proj_b_(rgb|event)\.bias",  # the backward scan reads dt_proj_*.bias
        r".*\.num_batches_tracked",
    )
)
# aliased pairs in their code (one tensor, two names): fer_jax key -> the partner
ALIASES = {
    f"{MAMBA}A_log_rgb": f"{MAMBA}A_log_event",
    f"{MAMBA}A_log_event": f"{MAMBA}A_log_rgb",
    f"{MAMBA}A_b_log_rgb": f"{MAMBA}A_b_log_event",
    f"{MAMBA}A_b_log_event": f"{MAMBA}A_b_log_rgb",
}


def is_unread(key: str) -> bool:
    """A torch key the official forward never reads."""
    return any(p.fullmatch(key) for p in UNREAD)


def _t(w: np.ndarray) -> np.ndarray:
    return tables.linear_out_in_to_in_out(w)


def _conv1d_depthwise(w: np.ndarray) -> np.ndarray:
    """torch depthwise ``Conv1d`` weight ``(d, 1, K)`` -> ``CausalDepthwiseConv1d.kernel`` ``(K, d)``."""
    if w.ndim != 3 or w.shape[1] != 1:
        raise ValueError(f"depthwise conv1d weight must be (d, 1, K), got {w.shape}")
    return np.ascontiguousarray(w[:, 0, :].T)


def _conv1d(w: np.ndarray) -> np.ndarray:
    """torch ``Conv1d`` weight ``(out, in, K)`` -> flax ``nnx.Conv`` kernel ``(K, in, out)``."""
    if w.ndim != 3:
        raise ValueError(f"conv1d weight must be 3-d, got {w.shape}")
    return np.ascontiguousarray(np.transpose(w, (2, 1, 0)))


def _mha_entries(torch_prefix: str, path: tuple, num_heads: int) -> list[tables.KeyEntry]:
    """``nn.MultiheadAttention`` (packed ``in_proj_weight (3d, d)``) -> ``nnx.MultiHeadAttention``."""

    def part(i: int, bias: bool) -> Callable[[np.ndarray], np.ndarray]:
        def f(w: np.ndarray) -> np.ndarray:
            d = w.shape[0] // 3
            if w.shape[0] % 3 or d % num_heads:
                raise ValueError(f"packed projection {w.shape} does not split into 3 x {num_heads} heads")
            w = w[i * d : (i + 1) * d]
            # (out, in) -> (in, heads, head_dim); bias (out,) -> (heads, head_dim)
            return w.reshape(num_heads, -1) if bias else w.T.reshape(d, num_heads, -1)

        return f

    def out_kernel(w: np.ndarray) -> np.ndarray:
        return w.T.reshape(num_heads, -1, w.shape[0])  # (out, in) -> (heads, head_dim, out)

    entries = []
    for i, name in enumerate(("query", "key", "value")):
        entries.append(
            tables.KeyEntry(f"{torch_prefix}in_proj_weight", (*path, name, "kernel"), part(i, False))
        )
        entries.append(tables.KeyEntry(f"{torch_prefix}in_proj_bias", (*path, name, "bias"), part(i, True)))
    entries.append(tables.KeyEntry(f"{torch_prefix}out_proj.weight", (*path, "out", "kernel"), out_kernel))
    entries.append(tables.KeyEntry(f"{torch_prefix}out_proj.bias", (*path, "out", "bias"), tables.identity))
    return entries


def _linear(torch_prefix: str, path: tuple, bias: bool = True) -> list[tables.KeyEntry]:
    out = [tables.KeyEntry(f"{torch_prefix}weight", (*path, "kernel"), _t)]
    if bias:
        out.append(tables.KeyEntry(f"{torch_prefix}bias", (*path, "bias"), tables.identity))
    return out


def key_table(model: MCOENet, cfg: MCOENetConfig) -> list[tables.KeyEntry]:
    """Every (their torch key, NNX path, transform) of the reference ``model`` (module docstring)."""
    entries: list[tables.KeyEntry] = []
    for torch_name, ours in BACKBONES.items():
        for e in tables.key_table("resnet18", model.backbones[ours]):
            entries.append(
                tables.KeyEntry(
                    f"{torch_name}.resnet.{e.torch_key}", ("backbones", ours, *e.nnx_path), e.transform
                )
            )
    for m in ("rgb", "event"):
        blk = ("mamba", "blocks", m)
        for sfx in ("", "_b"):
            entries += [
                tables.KeyEntry(
                    f"{MAMBA}conv1d{sfx}_{m}.weight", (*blk, f"conv1d{sfx}", "kernel"), _conv1d_depthwise
                ),
                tables.KeyEntry(
                    f"{MAMBA}conv1d{sfx}_{m}.bias", (*blk, f"conv1d{sfx}", "bias"), tables.identity
                ),
                tables.KeyEntry(f"{MAMBA}x_proj{sfx}_{m}.weight", (*blk, f"x_proj{sfx}", "kernel"), _t),
                tables.KeyEntry(f"{MAMBA}dt_proj{sfx}_{m}.weight", (*blk, f"dt_proj{sfx}", "kernel"), _t),
                # both directions take the forward bias (their second call passes dt_proj_{m}.bias)
                tables.KeyEntry(f"{MAMBA}dt_proj_{m}.bias", (*blk, f"dt_proj{sfx}", "bias"), tables.identity),
                tables.KeyEntry(f"{MAMBA}A{sfx}_log_{m}", (*blk, f"A{sfx}_log"), tables.identity),
                tables.KeyEntry(f"{MAMBA}D{sfx}_{m}", (*blk, f"D{sfx}"), tables.identity),
            ]
        entries += _linear(f"{MAMBA}in_proj_{m}.", (*blk, "in_proj"), bias=False)
        entries += _linear(f"{MAMBA}out_proj_{m}.", (*blk, "out_proj"), bias=False)
    for torch_name, ours in (("peep", "B_f"), ("Cpeep", "C_f"), ("b_peep", "B_b"), ("b_Cpeep", "C_b")):
        entries += _linear(f"{MAMBA}x_proj_{torch_name}.", ("mamba", "mjos", f"{ours}_shared"), bias=False)
    entries += _linear("MCIB.proj_rgb.", ("mcib", "proj_rgb"))
    entries += _linear("MCIB.proj_event.", ("mcib", "proj_event"))
    entries += _mha_entries("MCIB.attn.", ("mcib", "attn"), cfg.mcib.num_heads)
    entries += _linear("fusion_proj.0.", ("neck",))
    router = ("head", "router")
    entries += _mha_entries("moe.router.self_attn.", (*router, "attn"), cfg.moe.router_heads)
    entries += [
        tables.KeyEntry("moe.router.norm.weight", (*router, "norm", "scale"), tables.identity),
        tables.KeyEntry("moe.router.norm.bias", (*router, "norm", "bias"), tables.identity),
    ]
    entries += _linear("moe.router.mlp.0.", (*router, "fc1"))
    entries += _linear("moe.router.mlp.2.", (*router, "fc2"))
    for i, kind in enumerate(model.head.types):
        tp, ours = f"moe.experts.expert_{i}.", ("head", "experts", i)
        if kind == "focal":
            entries += [
                tables.KeyEntry(f"{tp}0.weight", (*ours, "conv3", "kernel"), _conv1d),
                tables.KeyEntry(f"{tp}0.bias", (*ours, "conv3", "bias"), tables.identity),
                tables.KeyEntry(f"{tp}2.weight", (*ours, "conv1", "kernel"), _conv1d),
                tables.KeyEntry(f"{tp}2.bias", (*ours, "conv1", "bias"), tables.identity),
            ]
        elif kind == "attention":
            entries += _mha_entries(f"{tp}attn.", (*ours, "attn"), cfg.moe.attention_heads)
            entries += [
                tables.KeyEntry(f"{tp}norm.weight", (*ours, "norm", "scale"), tables.identity),
                tables.KeyEntry(f"{tp}norm.bias", (*ours, "norm", "bias"), tables.identity),
            ]
            entries += _linear(f"{tp}fc.", (*ours, "head"))
        else:
            for j in range(cfg.moe.deep_depth):
                entries += _linear(f"{tp}layers.{j}.0.", (*ours, "up", j))
                entries += _linear(f"{tp}layers.{j}.2.", (*ours, "down", j))
            entries.append(tables.KeyEntry(f"{tp}res_coef", (*ours, "res_coef"), tables.identity))
            entries += _linear(f"{tp}final_fc.", (*ours, "head"))
    return entries


def config_from_state_dict(sd: Mapping[str, np.ndarray], **overrides: Any) -> MCOENetConfig:
    """The reference settings whose shapes match ``sd`` (their release: :data:`REFERENCE` as is).

    Read from the shapes: ResNet head size, event channels, d_model / expand / d_state / dt_rank, neck
    width, number of experts, router and focal widths, deep depth, classes. Head counts are not in a
    state dict: the official 2 (MCIB, attention experts) and 4 (router). ``overrides`` win.
    """
    from fer_jax.convert import ConversionError

    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise ConversionError(f"not an MCO-E Net (hrdhrd/MCO-E-Net) state dict: no {key}")
        return tuple(np.shape(sd[key]))

    d_inner2, d_model = shape(f"{MAMBA}in_proj_rgb.weight")
    d_inner = d_inner2 // 2
    a_key = f"{MAMBA}A_log_rgb" if f"{MAMBA}A_log_rgb" in sd else f"{MAMBA}A_log_event"
    num_experts = shape("moe.router.mlp.2.weight")[0]
    deep = [k for k in sd if re.fullmatch(r"moe\.experts\.expert_\d+\.layers\.(\d+)\.0\.weight", k)]
    first_deep = min((k.split(".")[2] for k in deep), default=None)
    depth = sum(1 for k in deep if k.split(".")[2] == first_deep) if first_deep else 5
    if "moe.experts.expert_0.2.weight" in sd:
        num_classes = shape("moe.experts.expert_0.2.weight")[0]  # focal expert's output conv
    elif "moe.experts.expert_1.fc.weight" in sd:
        num_classes = shape("moe.experts.expert_1.fc.weight")[0]
    else:
        raise ConversionError("not an MCO-E Net state dict: no expert_0 / expert_1 output layer")
    inferred: dict[str, Any] = {
        "num_classes": int(num_classes),
        "event_channels": shape("res10.resnet.conv1.weight")[1],
        "backbone_classes": shape("res00.resnet.fc.weight")[0],
        "token_width": d_model,  # their 500 x 4 tokens go to the Mamba unprojected
        "d_model": d_model,
        "expand": d_inner // max(d_model, 1),
        "d_state": shape(a_key)[1],
        "dt_rank": shape(f"{MAMBA}dt_proj_rgb.weight")[1],
        "neck_dim": shape("fusion_proj.0.weight")[0],
        "moe": {
            "num_experts": num_experts,
            "router_hidden": shape("moe.router.mlp.0.weight")[0],
            "focal_hidden": shape("moe.experts.expert_0.0.weight")[0] if num_experts > 0 else 512,
            "deep_depth": depth,
        },
    }
    merged = mco_e_net_reference._merge(inferred, overrides)
    try:
        return mco_e_net_reference.reference_config(**merged)
    except ValueError as exc:
        raise ConversionError(f"MCO-E Net settings: {exc}") from None


@functools.lru_cache(maxsize=4)
def _abstract_split(cfg: MCOENetConfig, seed: int) -> tuple[Any, Any]:
    # tracing the init of four ResNet-18s costs seconds; conversions of one config share one trace
    return nnx.split(nnx.eval_shape(lambda: MCOENet(cfg, rngs=nnx.Rngs(seed))))


def build_abstract(cfg: MCOENetConfig, seed: int = 0) -> MCOENet:
    """The reference model with abstract weights (no initialisation: a conversion or a restore fills
    every Param / BatchStat) and concrete dropout RNG state (``seed``)."""
    graphdef, state = _abstract_split(cfg, seed)
    model = nnx.merge(graphdef, state, copy=True)
    for i, (_, var) in enumerate(nnx.to_flat_state(nnx.state(model, nnx.RngKey))):
        var.set_value(jax.random.key(seed + i))
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.RngCount)):
        var.set_value(jnp.zeros(var.shape, var.dtype))
    return model


def _check_aliases(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fills a missing half of an aliased A pair from its partner; refuses a pair that differs."""
    from fer_jax.convert import ConversionError

    sd = dict(sd)
    for key, partner in ALIASES.items():
        if key not in sd and partner in sd:
            sd[key] = sd[partner]
        elif key in sd and partner in sd and not np.array_equal(sd[key], sd[partner]):
            raise ConversionError(
                f"{key} and {partner} differ; in the official model they are one tensor (aliased "
                "nn.Parameters), so this is not a state dict of their MCOE"
            )
    return sd


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], *, seed: int = 0, **overrides: Any
) -> tuple[MCOENet, MCOENetConfig, list[str]]:
    """Their state dict -> (the filled reference model, its settings, the unread torch keys skipped).

    ``ConversionError`` (one line) lists missing / unexpected keys or shape mismatches.
    """
    from fer_jax.convert import ConversionError, _listing, _variable_at

    sd = _check_aliases({k: np.asarray(v) for k, v in state_dict.items()})
    cfg = config_from_state_dict(sd, **overrides)
    model = build_abstract(cfg, seed)
    table = key_table(model, cfg)
    expected = {e.torch_key for e in table}
    skipped = sorted(k for k in sd if k not in expected and is_unread(k))
    missing = sorted(expected - set(sd))
    unexpected = sorted(k for k in sd if k not in expected and not is_unread(k))
    if missing or unexpected:
        parts = [_listing("missing keys", missing)] if missing else []
        parts += [_listing("unexpected keys", unexpected)] if unexpected else []
        raise ConversionError(f"state dict does not match {ARCH}: " + "; ".join(parts))
    values, mismatched = {}, []
    for e in table:
        target = _variable_at(model, e.nnx_path)
        try:
            value = np.asarray(e.transform(np.asarray(sd[e.torch_key], dtype=np.float32)))
        except ValueError as exc:
            mismatched.append(f"{e.torch_key} ({exc})")
            continue
        if value.shape != tuple(target.shape):
            mismatched.append(f"{e.torch_key} {np.shape(sd[e.torch_key])} -> {value.shape} vs {target.shape}")
        values[e.nnx_path] = value
    if mismatched:
        raise ConversionError(
            f"state dict does not match {ARCH}: " + _listing("shape mismatches", mismatched)
        )
    # every weight of the model must come from the file: a variable no row fills would keep its init
    filled = {".".join(map(str, p)) for p in values}
    own = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat)))}
    if own - filled:
        raise ConversionError(_listing("model variables no table row fills", sorted(own - filled)))
    for path, value in values.items():
        _variable_at(model, path).set_value(np.asarray(value, dtype=np.float32))
    return model, cfg, skipped


def settings_dict(cfg: MCOENetConfig) -> dict[str, Any]:
    """``cfg`` as JSON-ready nested dicts (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def load(directory: str | Path, **overrides: Any) -> MCOENet:
    """The reference model a conversion wrote to ``directory`` (its ``meta.json`` settings + weights)."""
    from fer_jax.convert import ConversionError, load_backbone_into, read_meta

    meta = read_meta(directory)
    if meta.get("arch") != ARCH:
        raise ConversionError(f"{directory} holds {meta.get('arch')} weights, not {ARCH}")
    settings = mco_e_net_reference._merge(meta.get("model") or {}, overrides)
    cfg = mco_e_net_reference.reference_config(**settings)
    return load_backbone_into(build_abstract(cfg), directory)
