"""Typed model settings: one frozen dataclass per model, filled from ``config.model`` by one function.

Each model module defines a frozen dataclass holding every setting of its model with its default (the
ONE place a default lives: ``MambaFERConfig``, ``MCOENetConfig`` with nested ``MJOSConfig`` /
``MCIBConfig`` / ``MoEConfig``, ``ResNetRNNConfig``, ``VideoResNetConfig``, ``FormerDFERConfig``), and a
``model_config(config)`` that calls :func:`from_config_dict` on the ml_collections ``config.model``. A key
the dataclass does not know is an error naming it, so a typo on the command line
(``--config.model.moe.num_expert=4``) stops the run instead of being silently ignored::

    from_config_dict(MCOENetConfig, config.model)
    # ValueError: unknown config key model.moe.num_expert; known: attention_heads, deep_depth, ...

Values are checked against the field's annotation (``int``, ``float`` (ints accepted), ``bool``,
``str``, ``tuple[int, ...]``, unions of these); lists become tuples so the result is hashable.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _is_group(value: Any) -> bool:
    """A mapping of settings: dict, ConfigDict, FrozenConfigDict (anything with ``keys`` / ``items``)."""
    return hasattr(value, "items") and hasattr(value, "keys") and not isinstance(value, (str, bytes))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested_dataclass(hint: Any) -> type | None:
    """The dataclass type a field holds (``X`` or ``X | None``), or None for a plain value."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                return arg
    return None


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against ``hint`` (and lists made tuples); ValueError naming ``where`` otherwise."""
    ok, out = _match(value, hint)
    if not ok:
        raise ValueError(f"config key {where} must be {_describe(hint)}, got {value!r}")
    return out


def _match(value: Any, hint: Any) -> tuple[bool, Any]:
    if hint is Any:
        return True, value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, out = _match(value, arg)
            if ok:
                return True, out
        return False, value
    if hint is type(None):
        return value is None, value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        item_hints = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_hints) != len(value):
            return False, value
        items = [_match(v, h) for v, h in zip(value, item_hints)]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if hint is bool:
        return isinstance(value, (bool,)), value
    if hint is int:
        # bool is an int subclass; True for a width is a mistake, not a 1
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value  # an annotation this checker does not model: accept as given


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return "a sequence"
    return getattr(hint, "__name__", str(hint))


def from_config_dict(
    cls: type[T],
    cfg: Any,
    *,
    where: str = "model",
    derived: Mapping[str, tuple[str, Any]] | None = None,
) -> T:
    """The ``cls`` dataclass filled from the mapping ``cfg`` (a ConfigDict, a dict, or None for defaults).

    Keys absent from ``cfg`` keep the dataclass defaults; a key that is not a field raises
    ``ValueError("unknown config key {where}.{key}; known: ...")``; a field whose type is a dataclass
    takes a nested mapping and is filled recursively (``where`` grows: ``model.moe``). ``derived`` maps
    fields whose value comes from elsewhere to ``(source, value)``, e.g. ``{"num_frames":
    ("data.num_frames", 16)}``: ``cfg`` may not set them (the error names the source), and the value is
    used as given. ``cfg`` already a ``cls`` instance is returned as is (with ``derived`` applied).
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    derived = dict(derived or {})
    if isinstance(cfg, cls):
        return dataclasses.replace(cfg, **{k: v for k, (_, v) in derived.items()}) if derived else cfg
    if cfg is not None and not _is_group(cfg):
        raise ValueError(f"config key {where} must be a group of settings, got {cfg!r}")
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in cfg.items() if cfg is not None else ():
        path = f"{where}.{key}"
        if key not in fields:
            raise ValueError(f"unknown config key {path}; known: {', '.join(sorted(fields))}")
        if key in derived:
            raise ValueError(f"config key {path} cannot be set: the model takes it from {derived[key][0]}")
        nested = _nested_dataclass(hints[key])
        if nested is not None and value is not None:
            kwargs[key] = from_config_dict(nested, value, where=path)
        else:
            kwargs[key] = _convert(value, hints[key], path)
    for key, (source, value) in derived.items():
        if key not in fields:
            raise ValueError(f"{cls.__name__} has no field {key} (derived from {source})")
        kwargs[key] = _convert(value, hints[key], source)
    return cls(**kwargs)


def is_weights_dir(value: str | None) -> bool:
    """Whether a ``*backbone_weights`` setting names a directory: ``""`` and ``"none"`` (any case) mean
    random initialisation (``model.backbone_weights=none`` says so explicitly)."""
    return bool(value) and str(value).strip().lower() != "none"
