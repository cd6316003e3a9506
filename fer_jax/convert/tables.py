"""Key tables: which torchvision state-dict key fills which NNX variable, and how it is transposed.

The ports name their modules as torchvision does, so a module's NNX path joined with dots is its
torchvision module name (``layer2.0.downsample.0``) up to the renames in ``MODULE_RENAMES``. What differs
is the leaf: ``LEAF_RULES`` maps (layer type, NNX leaf) -> (torch leaf, transform). ``key_table(arch,
model)`` applies both to every layer of a model and returns the full table; the converter refuses a state
dict whose keys are not exactly the table's (minus ``SKIPPED_TORCH_LEAVES``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from flax import nnx

from fer_jax.models.efficientnet_v2 import efficientnet_v2_l, efficientnet_v2_m, efficientnet_v2_s
from fer_jax.models.layers import BatchNorm
from fer_jax.models.resnet import resnet18, resnet34

ARCHS: dict[str, Callable[..., nnx.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "efficientnet_v2_s": efficientnet_v2_s,
    "efficientnet_v2_m": efficientnet_v2_m,
    "efficientnet_v2_l": efficientnet_v2_l,
}
_EFFNETS = ("efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l")

# NNX module path (dotted) -> torchvision module name, where they differ. Our EfficientNet keeps the
# classifier's Dropout as a separate attribute, torchvision puts it at classifier.0 and the Linear at .1.
MODULE_RENAMES: dict[str, dict[str, str]] = {
    "resnet18": {},
    "resnet34": {},
    **{arch: {"classifier": "classifier.1"} for arch in _EFFNETS},
}
# NNX module holding the classification head (absent when num_classes=None)
HEAD_MODULE: dict[str, str] = {
    "resnet18": "fc",
    "resnet34": "fc",
    **{arch: "classifier" for arch in _EFFNETS},
}
# The first convolution, adapted by --in-channels (NNX path of the module)
FIRST_CONV: dict[str, str] = {
    "resnet18": "conv1",
    "resnet34": "conv1",
    **{arch: "features.0.0" for arch in _EFFNETS},
}

# torch leaves with no NNX counterpart (a counter torch keeps for momentum=None)
SKIPPED_TORCH_LEAVES = ("num_batches_tracked",)


def conv_oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    """torch conv weight ``(out, in / groups, kh, kw)`` -> flax kernel ``(kh, kw, in / groups, out)``."""
    if w.ndim != 4:
        raise ValueError(f"conv weight must be 4-d, got shape {w.shape}")
    return np.transpose(w, (2, 3, 1, 0))


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
    renames = MODULE_RENAMES[arch]
    entries = []
    for path, module in nnx.iter_modules(model):
        name = ".".join(map(str, path))
        for (layer_type, leaf), (torch_leaf, transform) in LEAF_RULES.items():
            if isinstance(module, layer_type) and isinstance(getattr(module, leaf, None), nnx.Variable):
                torch_module = renames.get(name, name)
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
