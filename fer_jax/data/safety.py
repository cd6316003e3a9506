"""Checks a shard folder before TFDS opens it: opening must never run code.

``tfds.builder_from_directory`` rebuilds the features from ``features.json`` (and from a ``features``
entry of ``dataset_info.json``) and imports the module of every ``pythonClassName`` it names, so a
folder from elsewhere could name any importable module and have it run. fer_jax writes only the three
feature classes below (``fer_jax.data.schema.features``); anything else is refused before TFDS reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from fer_jax.paths import as_path

ALLOWED_FEATURE_CLASSES = frozenset(
    {
        "tensorflow_datasets.core.features.features_dict.FeaturesDict",
        "tensorflow_datasets.core.features.tensor_feature.Tensor",
        "tensorflow_datasets.core.features.class_label_feature.ClassLabel",
    }
)
_CLASS_KEYS = ("pythonClassName", "python_class_name")  # the proto's JSON name and its field name
_FILES = ("features.json", "dataset_info.json")


def _class_names(node: Any) -> Iterator[Any]:
    """Every value stored under a class-name key, at any depth."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _CLASS_KEYS:
                yield v
            yield from _class_names(v)
    elif isinstance(node, list):
        for v in node:
            yield from _class_names(v)


def check_feature_classes(data_dir: str | os.PathLike) -> None:
    """``ValueError`` (one line, naming the class and the file) when ``data_dir``'s ``features.json`` or
    ``dataset_info.json`` names a feature class fer_jax does not write; reads JSON only, imports nothing.
    Paths other than local ones (``gs://``) are read through ``etils.epath``."""
    base = _path(data_dir)
    for name in _FILES:
        p = base / name
        if not p.exists():
            continue
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(
                f"unreadable {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from None
        for cls in _class_names(doc):
            if cls not in ALLOWED_FEATURE_CLASSES:
                raise ValueError(
                    f"{p} names feature class {str(cls)[:200]!r}, which fer_jax never writes; refusing to "
                    "open it (TFDS would import that module)"
                )


def _path(data_dir: str | os.PathLike):
    return as_path(data_dir)
