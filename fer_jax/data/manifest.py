"""``manifest.json`` of a built dataset: reading, writing, and paper 1's class weights.

Fields (docs/architecture.md): ``schema_version``, ``dataset``, ``class_names``, ``class_counts``
(``{split: [7 ints]}``), ``class_weights`` (train split), ``lighting_names``, ``lighting_counts``,
``num_examples``, ``preprocessing``, ``sources``, ``skipped`` (``[{item, reason}]``), ``repaired``,
``normalization``, ``event_kind`` (``"frames"`` | ``"voxel"`` | None). A build is finished only when ``COMPLETE_MARKER`` exists beside the manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
COMPLETE_MARKER = "_BUILD_COMPLETE"


def class_weights(
    counts: Sequence[int], *, smoothing: float = 1.0, clip: tuple[float, float] = (0.1, 10.0)
) -> list[float]:
    """Paper 1's "smoothed inverse-frequency weights clipped to [0.1, 10]".

    ``w_c = N / (K * (n_c + smoothing))`` (N examples, K classes): 1 for a balanced set, larger for rare
    classes; the add-``smoothing`` keeps an empty class finite (the paper gives no formula; this is the
    common reading), then clipped.
    """
    n = np.asarray(counts, np.float64)
    if n.ndim != 1 or len(n) == 0 or np.any(n < 0):
        raise ValueError("counts must be a non-empty list of non-negative integers")
    w = n.sum() / (len(n) * (n + smoothing))
    return np.clip(w, *clip).round(6).tolist()


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
