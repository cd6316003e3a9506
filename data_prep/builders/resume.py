"""Processed items kept on disk while a build runs, so that an interrupted build resumes where it stopped.

``data_prep.build`` writes every finished item (its record, or its skip reason) into a cache folder beside
``--out`` (``.<out>.cache``) as soon as a worker returns it; a rerun with the same settings and root reads
those back instead of decoding and aligning the clips again, and the folder is removed when the build
completes. Other settings (or another root) start the cache afresh.

Each item is two files written through a rename (``<n>.json``: split, key, checksum, notes, stats, skip,
the scalar fields; ``<n>.npz``: the arrays, read with ``allow_pickle=False``): a crash leaves whole items
only, and reading the cache never runs code. JPEG frame lists are stored as one byte buffer and offsets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.builders.common import Item, Result

_META = "cache.json"


class ResultCache:
    """Finished ``Result``s of one build's settings, by ``(split, key)``."""

    def __init__(self, folder: str | os.PathLike, identity: dict[str, Any]):
        self.folder = Path(folder)
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        meta = self.folder / _META
        old = None
        if meta.is_file():
            try:
                old = json.loads(meta.read_text())
            except (OSError, ValueError):
                old = None
        if old != self.identity:  # other settings or root: nothing in it is reusable
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            meta.write_text(json.dumps(self.identity, sort_keys=True))

    def _stem(self, split: str, key: str) -> Path:
        return self.folder / hashlib.sha1(f"{split}/{key}".encode()).hexdigest()

    def get(self, item: Item) -> Result | None:
        """The cached result of ``item``, or None (absent, unreadable, or another label: processed again)."""
        stem = self._stem(item.split, item.key)
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            if meta["split"] != item.split or meta["key"] != item.key:
                return None
            example = None
            if meta["skip"] is None:
                with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
                    example = _decode(meta["fields"], z)
                if int(example.get("label", item.label)) != item.label:
                    return None
        except (OSError, ValueError, KeyError):
            return None
        return Result(meta["split"], meta["key"], example=example, skip=meta["skip"],
                      checksum=meta["checksum"], notes=list(meta["notes"]), stats=dict(meta["stats"]))  # fmt: skip

    def put(self, r: Result) -> None:
        """Stores ``r`` (the arrays first, the JSON last: an item without its JSON is not cached)."""
        stem = self._stem(r.split, r.key)
        fields: dict[str, Any] = {}
        if r.example is not None:
            arrays = _encode(r.example, fields)
            tmp = stem.with_name(stem.name + ".tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, stem.with_suffix(".npz"))
        meta = {"split": r.split, "key": r.key, "skip": r.skip, "checksum": r.checksum, "notes": r.notes,
                "stats": r.stats, "fields": fields}  # fmt: skip
        tmp = stem.with_name(stem.name + ".tmp.json")
        tmp.write_text(json.dumps(meta, default=float))
        os.replace(tmp, stem.with_suffix(".json"))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _encode(example: dict[str, Any], fields: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, v in example.items():
        if isinstance(v, list | tuple) and all(isinstance(b, bytes) for b in v):
            fields[name] = {"kind": "bytes_list"}
            arrays[name] = np.frombuffer(b"".join(v), np.uint8)
            arrays[name + "__offsets"] = np.cumsum([0] + [len(b) for b in v]).astype(np.int64)
        elif isinstance(v, np.ndarray):
            fields[name] = {"kind": "array"}
            arrays[name] = v
        elif isinstance(v, bool | int | float | str | np.generic):
            fields[name] = {"kind": "scalar", "value": v.item() if isinstance(v, np.generic) else v}
        else:
            raise ValueError(f"cannot cache field {name!r} of type {type(v).__name__}")
    return arrays


def _decode(fields: dict[str, Any], z) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in fields.items():
        if f["kind"] == "bytes_list":
            buf, off = z[name].tobytes(), z[name + "__offsets"]
            out[name] = [buf[off[i] : off[i + 1]] for i in range(len(off) - 1)]
        elif f["kind"] == "array":
            out[name] = z[name]
        else:
            out[name] = f["value"]
    return out
