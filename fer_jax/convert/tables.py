"""Key tables: which torchvision (or authors') state-dict key fills which NNX variable, and how it is transposed.

The ports name their modules as torchvision does, so a module's NNX path joined with dots is its
torchvision module name (``layer2.0.downsample.0``) up to the renames in ``MODULE_RENAMES`` (regular
expressions; the first that matches a module's dotted path rewrites it, see :func:`torch_module_name`).
What differs is the leaf: ``LEAF_RULES`` maps (layer type, NNX leaf) -> (torch leaf, transform).
``key_table(arch, model)`` applies both to every layer of a model and returns the full table; the
converter refuses a state dict whose keys are not exactly the table's (minus ``SKIPPED_TORCH_LEAVES``).

Video archs: ``r3d_18`` / ``r2plus1d_18`` are torchvision's Kinetics-400 models, ``resnet3d_18`` Hara et
al.'s (his checkpoints use our names as they are), ``former_dfer`` the Former-DFER authors' whole model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np
from flax import nnx

from fer_jax.models.efficientnet_v2 import efficientnet_v2_l, efficientnet_v2_m, efficientnet_v2_s
from fer_jax.models.former_dfer import SFormer, TFormer, former_dfer
from fer_jax.models.layers import BatchNorm
from fer_jax.models.r3d import r2plus1d_18, r3d_18, resnet3d_18
from fer_jax.models.resnet import resnet18, resnet34

ARCHS: dict[str, Callable[..., nnx.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "efficientnet_v2_s": efficientnet_v2_s,
    "efficientnet_v2_m": efficientnet_v2_m,
    "efficientnet_v2_l": efficientnet_v2_l,
    "resnet3d_18": resnet3d_18,
    "r3d_18": r3d_18,
    "r2plus1d_18": r2plus1d_18,
    "former_dfer": former_dfer,
}
_EFFNETS = ("efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l")
_RESNETS = ("resnet18", "resnet34", "resnet3d_18", "r3d_18", "r2plus1d_18")

# torchvision's video blocks wrap each conv in a Sequential with its BN: conv1 -> conv1.0, bn1 -> conv1.1
_TV_BLOCK = [(r"\.(conv[12])$", r".\1.0"), (r"\.bn([12])$", r".conv\1.1")]
# the authors' Residual(PreNorm(dim, fn)) wrappers around each transformer sub-layer
_FORMER_LAYER = [
    (r"\.spatial_transformer\.(\d+)\.attn_norm$", r".spatial_transformer.layers.\1.0.fn.norm"),
    (r"\.spatial_transformer\.(\d+)\.attn\.to_qkv$", r".spatial_transformer.layers.\1.0.fn.fn.to_qkv"),
    (r"\.spatial_transformer\.(\d+)\.attn\.to_out$", r".spatial_transformer.layers.\1.0.fn.fn.to_out.0"),
    (r"\.spatial_transformer\.(\d+)\.ff_norm$", r".spatial_transformer.layers.\1.1.fn.norm"),
    (r"\.spatial_transformer\.(\d+)\.ff\.fc1$", r".spatial_transformer.layers.\1.1.fn.fn.net.0"),
    (r"\.spatial_transformer\.(\d+)\.ff\.fc2$", r".spatial_transformer.layers.\1.1.fn.fn.net.3"),
]
# NNX module path (dotted) -> torch module name, where they differ: (pattern, replacement), first match wins.
# Our EfficientNet keeps the classifier's Dropout as a separate attribute, torchvision puts it at
# classifier.0 and the Linear at .1; our Conv2Plus1D names its (spatial conv, BN, ReLU, temporal conv)
# Sequential's entries 0, 1 and 3.
MODULE_RENAMES: dict[str, list[tuple[str, str]]] = {
    "resnet18": [],
    "resnet34": [],
    **{arch: [(r"^classifier$", "classifier.1")] for arch in _EFFNETS},
    "resnet3d_18": [],
    "r3d_18": [(r"^conv1$", "stem.0"), (r"^bn1$", "stem.1"), *_TV_BLOCK],
    "r2plus1d_18": [
        (r"^conv1\.spatial$", "stem.0"),
        (r"^conv1\.bn$", "stem.1"),
        (r"^conv1\.temporal$", "stem.3"),
        (r"^bn1$", "stem.4"),
        (r"\.(conv[12])\.spatial$", r".\1.0.0"),
        (r"\.(conv[12])\.bn$", r".\1.0.1"),
        (r"\.(conv[12])\.temporal$", r".\1.0.3"),
        (r"\.bn([12])$", r".conv\1.1"),
    ],
    "former_dfer": [(r"^s_former\.resnet\.", "s_former."), *_FORMER_LAYER],
}
# NNX module holding the classification head (absent when num_classes=None)
HEAD_MODULE: dict[str, str] = {
    **{arch: "fc" for arch in _RESNETS},
    **{arch: "classifier" for arch in _EFFNETS},
    "former_dfer": "fc",
}
# The first convolution, adapted by --in-channels (NNX path of the module)
FIRST_CONV: dict[str, str] = {
    **{arch: "conv1" for arch in ("resnet18", "resnet34", "resnet3d_18", "r3d_18")},
    "r2plus1d_18": "conv1.spatial",
    **{arch: "features.0.0" for arch in _EFFNETS},
    "former_dfer": "s_former.resnet.conv1",
}


def torch_module_name(arch: str, nnx_name: str) -> str:
    """The torch module name of the NNX module at dotted path ``nnx_name`` in a port of ``arch``."""
    for pattern, replacement in MODULE_RENAMES[arch]:
        renamed, n = re.subn(pattern, replacement, nnx_name, count=1)
        if n:
            return renamed
    return nnx_name


# torch leaves with no NNX counterpart (a counter torch keeps for momentum=None)
SKIPPED_TORCH_LEAVES = ("num_batches_tracked",)


def conv_oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    """torch conv weight ``(out, in / groups, kh, kw)`` -> flax kernel ``(kh, kw, in / groups, out)``; a
    3D conv ``(out, in, kt, kh, kw)`` -> ``(kt, kh, kw, in, out)`` the same way."""
    if w.ndim not in (4, 5):
        raise ValueError(f"conv weight must be 4-d or 5-d, got shape {w.shape}")
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def linear_out_in_to_in_out(w: np.ndarray) -> np.ndarray:
    """torch linear weight ``(out, in)`` -> flax kernel ``(in, out)``."""
    if w.ndim != 2:
        raise ValueError(f"linear weight must be 2-d, got shape {w.shape}")
    return np.transpose(w, (1, 0))


def identity(w: np.ndarray) -> np.ndarray:
    return w


# (layer type, NNX leaf) -> (torch leaf, torch array -> NNX array)
LEAF_RULES: dict[tuple[type, str], tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    (nnx.Conv, "kernel"): ("weight", conv_oihw_to_hwio),
    (nnx.Conv, "bias"): ("bias", identity),
    (nnx.Linear, "kernel"): ("weight", linear_out_in_to_in_out),
    (nnx.Linear, "bias"): ("bias", identity),
    (BatchNorm, "scale"): ("weight", identity),
    (BatchNorm, "bias"): ("bias", identity),
    (BatchNorm, "mean"): ("running_mean", identity),
    (BatchNorm, "var"): ("running_var", identity),
    (nnx.LayerNorm, "scale"): ("weight", identity),
    (nnx.LayerNorm, "bias"): ("bias", identity),
    # Former-DFER's token parameters live on the S- / T-Former modules themselves
    (SFormer, "pos_embedding"): ("pos_embedding", identity),
    (TFormer, "pos_embedding"): ("pos_embedding", identity),
    (TFormer, "cls_token"): ("cls_token", identity),
}


@dataclasses.dataclass(frozen=True)
class KeyEntry:
    """One row of the table: ``state_dict[torch_key]`` -> ``transform`` -> the variable at ``nnx_path``."""

    torch_key: str
    nnx_path: tuple[str | int, ...]
    transform: Callable[[np.ndarray], np.ndarray]

    @property
    def nnx_key(self) -> str:
        return ".".join(map(str, self.nnx_path))


def key_table(arch: str, model: nnx.Module) -> list[KeyEntry]:
    """Every (torch key, NNX path, transform) of ``model`` (a port of ``arch``), in module order."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    entries = []
    for path, module in nnx.iter_modules(model):
        name = ".".join(map(str, path))
        for (layer_type, leaf), (torch_leaf, transform) in LEAF_RULES.items():
            if isinstance(module, layer_type) and isinstance(getattr(module, leaf, None), nnx.Variable):
                torch_module = torch_module_name(arch, name)
                entries.append(KeyEntry(f"{torch_module}.{torch_leaf}", (*path, leaf), transform))
    known = {type_ for type_, _ in LEAF_RULES}
    for path, module in nnx.iter_modules(model):
        # a layer type with variables that no rule covers would silently keep its random init
        if not isinstance(module, tuple(known)) and any(
            isinstance(v, nnx.Variable) and isinstance(v, (nnx.Param, nnx.BatchStat))
            for v in vars(module).values()
        ):
            raise TypeError(f"no key rule for {type(module).__name__} at {'.'.join(map(str, path))}")
    return entries


def adapt_first_conv(weight: np.ndarray, in_channels: int) -> np.ndarray:
    """Adapts a torch RGB conv weight ``(out, 3, kh, kw)`` to ``in_channels`` inputs.

    Rule (the usual one for non-RGB inputs, e.g. timm's): the mean over the RGB filters, tiled to
    ``in_channels`` and scaled by ``3 / in_channels``. The sum over input channels is preserved, so an
    input equal in every channel gives the same response as the RGB net on a grey image of that value.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"first conv weight must be (out, 3, kh, kw) to adapt, got {weight.shape}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if in_channels == 3:
        return weight
    mean = weight.mean(axis=1, keepdims=True)
    return (np.repeat(mean, in_channels, axis=1) * (3.0 / in_channels)).astype(weight.dtype)
