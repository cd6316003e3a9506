"""``manifest.json`` of a built dataset: reading and writing.

Fields (docs/architecture.md): ``schema_version``, ``dataset``, ``class_names``, ``class_counts``
(``{split: [7 ints]}``), ``lighting_names``, ``lighting_counts``,
``num_examples``, ``preprocessing``, ``sources``, ``skipped`` (``[{item, reason}]``), ``repaired``,
``normalization``, ``event_kind`` (``"frames"`` | ``"voxel"`` | None); a DFEW ``--fold all`` build adds
``folds`` and ``record_ids`` (``fer_jax.data.fold_splits``). A build is finished only when
``COMPLETE_MARKER`` exists beside the manifest. The folder may be remote (``gs://``, ``fer_jax.paths``).
Class weights are not stored: training derives them from
``class_counts["train"]`` with ``fer_jax.losses.class_weights_from_counts`` (one formula, one place).
"""

from __future__ import annotations

import json
import os

from fer_jax.paths import as_path, is_remote

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
COMPLETE_MARKER = "_BUILD_COMPLETE"


def load_manifest(data_dir: str | os.PathLike) -> dict:
    """The manifest of a finished build; ``ValueError`` with a one-line reason otherwise."""
    d = as_path(data_dir)
    if not d.is_dir():
        raise ValueError(f"no dataset directory {d}")
    if not (d / COMPLETE_MARKER).exists():
        raise ValueError(f"{d} is not a finished build (no {COMPLETE_MARKER}); rebuild it")
    try:
        m = json.loads((d / MANIFEST_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable {d / MANIFEST_FILE}: {e}") from e
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{d} has schema version {m.get('schema_version')}, this code reads {SCHEMA_VERSION}; rebuild"
        )
    return m


def write_manifest(data_dir: str | os.PathLike, manifest: dict) -> None:
    """Writes ``manifest.json`` (via a temporary file, so a crash never leaves half a manifest; a remote
    object is written whole in one upload)."""
    d = as_path(data_dir)
    text = json.dumps({"schema_version": SCHEMA_VERSION, **manifest}, indent=1, sort_keys=False)
    if is_remote(d):
        (d / MANIFEST_FILE).write_text(text)
        return
    tmp = d / (MANIFEST_FILE + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, d / MANIFEST_FILE)
