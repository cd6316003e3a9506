"""``manifest.json`` of a built dataset: reading and writing.

Fields (docs/architecture.md): ``schema_version``, ``dataset``, ``class_names``, ``class_counts``
(``{split: [7 ints]}``), ``lighting_names``, ``lighting_counts``,
``num_examples``, ``preprocessing``, ``sources``, ``skipped`` (``[{item, reason}]``), ``repaired``,
``normalization``, ``event_kind`` (``"frames"`` | ``"voxel"`` | None); a DFEW ``--fold all`` build adds
``folds`` and ``record_ids`` (``fer_jax.data.fold_splits``). A build is finished only when
``COMPLETE_MARKER`` exists beside the manifest. Class weights are not stored: training derives them from
``class_counts["train"]`` with ``fer_jax.losses.class_weights_from_counts`` (one formula, one place).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
COMPLETE_MARKER = "_BUILD_COMPLETE"


def load_manifest(data_dir: str | os.PathLike) -> dict:
    """The manifest of a finished build; ``ValueError`` with a one-line reason otherwise."""
    d = Path(data_dir)
    if not d.is_dir():
        raise ValueError(f"no dataset directory {d}")
    if not (d / COMPLETE_MARKER).exists():
        raise ValueError(f"{d} is not a finished build (no {COMPLETE_MARKER}); rebuild it")
    try:
        with open(d / MANIFEST_FILE) as f:
            m = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable {d / MANIFEST_FILE}: {e}") from e
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{d} has schema version {m.get('schema_version')}, this code reads {SCHEMA_VERSION}; rebuild"
        )
    return m


def write_manifest(data_dir: str | os.PathLike, manifest: dict) -> None:
    """Writes ``manifest.json`` (via a temporary file, so a crash never leaves half a manifest)."""
    d = Path(data_dir)
    tmp = d / (MANIFEST_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"schema_version": SCHEMA_VERSION, **manifest}, f, indent=1, sort_keys=False)
    os.replace(tmp, d / MANIFEST_FILE)
