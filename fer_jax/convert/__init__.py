"""torchvision weights -> the fer_jax backbone ports, and loading the converted checkpoints.

Offline flow (nothing is downloaded): the user brings torchvision's state dict as a local ``.safetensors``
(read with the ``safetensors`` numpy API, no torch needed) or ``.pth`` file (needs torch; read with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects), and runs

    python -m fer_jax.convert --arch resnet18 --weights resnet18.safetensors --out weights/resnet18

which writes ``DIR/state`` (an orbax checkpoint of the model's ``nnx.Param`` and ``nnx.BatchStat``
variables, nested by NNX path) and ``DIR/meta.json`` (arch, in_channels, num_classes, source file).
Then ``load_pretrained(arch, DIR)`` returns the model, and ``load_backbone_into(module, DIR)`` fills an
existing backbone inside a bigger model (what ``config.model.backbone_weights`` points at).

Where the weights come from: torchvision's own download (``~/.cache/torch/hub/checkpoints/resnet18-*.pth``)
is a plain state dict; on a machine with torch, ``safetensors.torch.save_file(model.state_dict(),
"resnet18.safetensors")`` makes the torch-free format. Checkpoints saved from ``nn.DataParallel``
(``module.`` prefixes) and ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers are accepted.

``--in-channels N`` (N != 3) adapts the first convolution for non-RGB inputs (event voxel grids): the mean
of the RGB filters, tiled to N channels and scaled by 3 / N (see ``tables.adapt_first_conv``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from fer_jax.convert.tables import (
    ARCHS,
    FIRST_CONV,
    HEAD_MODULE,
    SKIPPED_TORCH_LEAVES,
    KeyEntry,
    adapt_first_conv,
    key_table,
    torch_module_name,
)
from fer_jax.paths import as_path

__all__ = [
    "ARCHS",
    "ConversionError",
    "KeyEntry",
    "convert_state_dict",
    "key_table",
    "load_backbone_into",
    "load_pretrained",
    "read_state_dict",
    "save_converted",
]

MCO_ARCH = "mco_e_net_reference"  # the authors' MCO-E Net state dict (fer_jax.convert.mco)
META_FILE = "meta.json"
STATE_DIR = "state"
FORMAT_VERSION = 1
_MAX_LISTED = 12


class ConversionError(ValueError):
    """A weight file or checkpoint that does not fit the requested model; the message is one line."""


def _listing(what: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)} {what}: {shown}{more}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a torchvision state dict (``.safetensors`` or ``.pth``/``.pt``) into ``{key: float32 array}``.

    Raises ``ConversionError`` (one line) for a missing, truncated or unreadable file, or one that does
    not hold a flat mapping of tensors. A ``module.`` prefix on every key (DataParallel) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file

            raw: Any = load_file(str(path))
        except Exception as exc:  # safetensors raises its own Rust-side error types
            raise ConversionError(f"cannot read {path.name} as safetensors: {_one_line(exc)}") from None
    elif suffix in (".pth", ".pt", ".bin"):
        try:
            import torch
        except ImportError:
            raise ConversionError(
                f"reading {path.name} needs torch; install it, or save the state dict as .safetensors"
            ) from None
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConversionError(f"cannot read {path.name} with torch.load: {_one_line(exc)}") from None
        if isinstance(raw, Mapping):
            for wrapper in ("state_dict", "model"):  # common training-checkpoint wrappers
                if wrapper in raw and isinstance(raw[wrapper], Mapping):
                    raw = raw[wrapper]
                    break
        if isinstance(raw, Mapping):
            try:
                raw = {k: v.detach().to(torch.float32).numpy() for k, v in raw.items() if torch.is_tensor(v)}
            except Exception as exc:
                raise ConversionError(f"{path.name}: cannot convert tensors: {_one_line(exc)}") from None
    else:
        raise ConversionError(f"unsupported weights format {suffix!r}; expected .safetensors or .pth")
    if not isinstance(raw, Mapping) or not raw:
        raise ConversionError(f"{path.name} does not hold a state dict (a mapping of names to tensors)")
    out = {str(k): np.asarray(v) for k, v in raw.items()}
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def _head_torch_prefix(arch: str) -> str:
    head = HEAD_MODULE[arch]
    return torch_module_name(arch, head) + "."


def convert_state_dict(
    arch: str,
    state_dict: Mapping[str, np.ndarray],
    *,
    in_channels: int = 3,
    rngs: nnx.Rngs | None = None,
) -> nnx.Module:
    """Builds the ``arch`` port and fills it from a torchvision state dict (numpy arrays).

    ``num_classes`` follows the state dict's head (``None`` when the head keys are absent). Raises
    ``ConversionError`` listing every missing / unexpected key, or every shape mismatch.
    """
    if arch not in ARCHS:
        raise ConversionError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    if in_channels < 1:
        raise ConversionError(f"in_channels must be >= 1, got {in_channels}")
    sd = {k: v for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in SKIPPED_TORCH_LEAVES}
    head_weight = _head_torch_prefix(arch) + "weight"
    num_classes = int(sd[head_weight].shape[0]) if head_weight in sd and sd[head_weight].ndim == 2 else None
    first = torch_module_name(arch, FIRST_CONV[arch]) + ".weight"
    if in_channels != 3 and first in sd:
        try:
            sd[first] = adapt_first_conv(np.asarray(sd[first]), in_channels)
        except ValueError as exc:
            raise ConversionError(f"--in-channels {in_channels}: {exc}") from None
    model = ARCHS[arch](in_channels=in_channels, num_classes=num_classes, rngs=rngs or nnx.Rngs(0))
    table = key_table(arch, model)
    expected = {e.torch_key for e in table}
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected:
        parts = [_listing("missing keys", missing)] if missing else []
        parts += [_listing("unexpected keys", unexpected)] if unexpected else []
        raise ConversionError(f"state dict does not match {arch}: " + "; ".join(parts))
    values, mismatched = {}, []
    for entry in table:
        target = _variable_at(model, entry.nnx_path)
        try:
            value = entry.transform(np.asarray(sd[entry.torch_key], dtype=np.float32))
        except ValueError as exc:
            mismatched.append(f"{entry.torch_key} ({exc})")
            continue
        if value.shape != target.shape:
            mismatched.append(
                f"{entry.torch_key} {tuple(sd[entry.torch_key].shape)} -> {value.shape} vs {target.shape}"
            )
        values[entry.nnx_path] = value
    if mismatched:
        raise ConversionError(
            f"state dict does not match {arch}: " + _listing("shape mismatches", mismatched)
        )
    for path, value in values.items():
        _variable_at(model, path).set_value(jnp.asarray(value))
    return model


def _variable_at(model: nnx.Module, path: tuple) -> nnx.Variable:
    node: Any = model
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    return node


def _weights_state(module: nnx.Module) -> dict[str, nnx.Variable]:
    """``{dotted NNX path: variable}`` of the Params and BatchStats (no RNG state)."""
    flat = nnx.to_flat_state(nnx.state(module, (nnx.Param, nnx.BatchStat)))
    return {".".join(map(str, path)): var for path, var in flat}


def save_converted(
    model: nnx.Module,
    out_dir: str | os.PathLike,
    *,
    arch: str,
    source: str = "",
    extra_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Writes ``out_dir/state`` (orbax) and ``out_dir/meta.json``; ``out_dir`` must not hold a checkpoint.

    ``extra_meta`` joins meta.json (mco_e_net_reference: ``model``, its settings)."""
    import orbax.checkpoint as ocp

    out = as_path(out_dir)  # gs:// stays remote; a local path absolute (orbax wants one)
    if (out / STATE_DIR).exists():
        raise ConversionError(f"{out / STATE_DIR} already exists; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    nested: dict[str, Any] = {}
    for key, var in _weights_state(model).items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(var[...])
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(out / STATE_DIR, nested)
    meta = {
        "format": FORMAT_VERSION,
        "arch": arch,
        "in_channels": int(getattr(model, "in_channels", 3)),
        "num_classes": getattr(model, "num_classes", None),
        "source": source,
        **(extra_meta or {}),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` a conversion wrote; ``ConversionError`` when ``directory`` is not one."""
    path = as_path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConversionError(f"{directory} is not a converted checkpoint (no {META_FILE})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {path}: {_one_line(exc)}") from None
    if meta.get("format") != FORMAT_VERSION or meta.get("arch") not in (*ARCHS, MCO_ARCH):
        raise ConversionError(
            f"{path}: unsupported format {meta.get('format')!r} / arch {meta.get('arch')!r}"
        )
    return meta


def _restore_flat(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp

    path = as_path(directory) / STATE_DIR
    if not path.exists():
        raise ConversionError(f"{directory} has no {STATE_DIR}/ checkpoint")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            nested = ckptr.restore(path)
    except Exception as exc:
        raise ConversionError(f"cannot restore {path}: {_one_line(exc)}") from None
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            flat[prefix] = np.asarray(node)

    walk(nested, "")
    return flat


def load_backbone_into(
    module: nnx.Module,
    directory: str | os.PathLike,
    *,
    skip_head: bool = False,
    adapt_in_channels: bool = False,
) -> nnx.Module:
    """Copies converted weights into an existing backbone ``module`` (in place; also returned).

    ``module`` is a port of the checkpoint's arch, e.g. a submodule of MambaFER or MCO-E Net. Every
    Param / BatchStat of ``module`` must be in the checkpoint with the same shape; a checkpoint head is
    dropped when ``module`` has none (``num_classes=None``); ``skip_head=True`` leaves ``module``'s own head
    (e.g. 7 classes) as initialised. ``adapt_in_channels=True`` lets an RGB checkpoint fill a module with
    another input channel count (e.g. an event backbone), adapting the first conv as ``--in-channels``
    does. Anything else raises ``ConversionError`` listing the mismatches.
    """
    meta = read_meta(directory)
    # a whole model (mco_e_net_reference) has no head or first conv of its own to treat apart
    head = HEAD_MODULE.get(meta["arch"], "\0") + "."
    ckpt = _restore_flat(directory)
    own = _weights_state(module)
    first = FIRST_CONV.get(meta["arch"], "\0") + ".kernel"
    if adapt_in_channels and first in ckpt and first in own and ckpt[first].shape[2] == 3:
        n = int(own[first].shape[2])
        # HWIO -> OIHW for the shared rule, and back
        ckpt[first] = adapt_first_conv(ckpt[first].transpose(3, 2, 0, 1), n).transpose(2, 3, 1, 0)
    skipped = {k for k in own if skip_head and k.startswith(head)}
    missing = sorted(k for k in own if k not in ckpt and k not in skipped)
    unexpected = sorted(k for k in ckpt if k not in own and not k.startswith(head))
    mismatched = sorted(
        f"{k} {ckpt[k].shape} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in ckpt and k not in skipped and ckpt[k].shape != tuple(v.shape)
    )
    if missing or unexpected or mismatched:
        parts = [_listing("missing keys", missing)] if missing else []
        parts += [_listing("unexpected keys", unexpected)] if unexpected else []
        parts += [_listing("shape mismatches", mismatched)] if mismatched else []
        hint = f" (checkpoint: {meta['arch']}, in_channels={meta['in_channels']})"
        raise ConversionError(f"checkpoint {directory} does not fit the module{hint}: " + "; ".join(parts))
    for k, var in own.items():
        if k not in skipped:
            var.set_value(jnp.asarray(ckpt[k], dtype=var.get_value().dtype))
    return module


def load_pretrained(arch: str, directory: str | os.PathLike, **model_kwargs: Any) -> nnx.Module:
    """Builds the ``arch`` port with ``model_kwargs`` and loads the converted weights in ``directory``.

    ``in_channels`` and ``num_classes`` default to the checkpoint's; ``num_classes=None`` gives the feature
    extractor (the checkpoint's head is dropped); another ``num_classes`` gets a new, randomly initialised
    head of that size (fine-tuning). ``rngs`` defaults to ``nnx.Rngs(0)``.
    """
    if arch == MCO_ARCH:  # the authors' whole model; model_kwargs override its stored settings
        from fer_jax.convert import mco

        return mco.load(directory, **model_kwargs)
    meta = read_meta(directory)
    if arch != meta["arch"]:
        raise ConversionError(f"{directory} holds {meta['arch']} weights, not {arch}")
    model_kwargs.setdefault("in_channels", meta["in_channels"])
    model_kwargs.setdefault("num_classes", meta["num_classes"])
    model_kwargs.setdefault("rngs", nnx.Rngs(0))
    new_head = model_kwargs["num_classes"] not in (None, meta["num_classes"])
    model = ARCHS[arch](**model_kwargs)
    return load_backbone_into(model, directory, skip_head=new_head)
