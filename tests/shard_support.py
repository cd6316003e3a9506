"""Reading built shards back in tests: every record of a split by its clip id."""

from __future__ import annotations

import tensorflow_datasets as tfds


def records_by_id(shards, split: str) -> dict:
    """``{id: record}`` of every record of ``split`` in the build at ``shards`` (TFDS layout)."""
    ds = tfds.builder_from_directory(str(shards)).as_data_source(split)
    out = {}
    for i in range(len(ds)):
        ex = ds[i]
        out[ex["id"].decode() if isinstance(ex["id"], bytes) else str(ex["id"])] = ex
    return out
