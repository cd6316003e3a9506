"""The dataset facts a run needs, read once from a build's ``manifest.json`` into a typed value.

``DataInfo.load(data_dir)`` (the shards' manifest) or ``DataInfo.from_manifest(dict)`` (a run folder's
copy, or a test's in-memory manifest). Fields a manifest lacks (in-memory test data) take neutral
defaults; ``raw`` keeps the whole dict for writing it back beside a run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def _frozen(d: Mapping | None) -> Mapping:
    return MappingProxyType(dict(d or {}))


def stored_hw(prep: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` of a build's stored frames from its manifest's ``preprocessing``: ``height`` / ``width``
    where recorded (aspect-kept SEE builds), else the square ``size``; None when no size is recorded."""
    if prep.get("size") is None:
        return None
    size = int(prep["size"])
    return int(prep.get("height") or size), int(prep.get("width") or size)


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """Facts of one shard build.

    Attributes:
      dataset: ``"dfew"``, ``"see"``, ``"dsee"`` or None (unknown: in-memory data).
      class_names: the class names in label order.
      class_counts: split -> per-class example counts (label order).
      num_examples: split -> examples.
      lighting_names: lighting condition names in label order, or None (no lighting labels).
      image_size: S of the stored frames (their side; for ``--resize shorter`` builds the shorter side),
        or None.
      image_height, image_width: the stored frames' H and W (manifests before non-square SEE builds, and
        DFEW's, record only ``size``: both equal S), or None.
      stored_frames: frames stored per record (T for DFEW, K for SEE; 0: all), or None.
      preprocessing: the builder's settings dict (``FaceRecordSettings`` / ``EyeRecordSettings`` read it).
      raw: the manifest as read.
    """

    dataset: str | None
    class_names: tuple[str, ...]
    class_counts: Mapping[str, tuple[int, ...]]
    num_examples: Mapping[str, int]
    lighting_names: tuple[str, ...] | None
    image_size: int | None
    stored_frames: int | None
    preprocessing: Mapping[str, Any]
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False, default_factory=dict)
    image_height: int | None = None
    image_width: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> DataInfo:
        """Reads a manifest dict; raises ValueError when it names no classes."""
        names = manifest.get("class_names")
        if not names:
            raise ValueError("the manifest lists no class_names")
        prep = dict(manifest.get("preprocessing") or {})
        counts = {s: tuple(int(n) for n in c) for s, c in (manifest.get("class_counts") or {}).items()}
        num = {s: int(n) for s, n in (manifest.get("num_examples") or {}).items()}
        if not num:  # older / in-memory manifests: the counts say it
            num = {s: sum(c) for s, c in counts.items()}
        lighting = manifest.get("lighting_names")
        size = int(prep["size"]) if prep.get("size") is not None else None
        height, width = stored_hw(prep) or (None, None)
        return cls(
            dataset=manifest.get("dataset"),
            class_names=tuple(str(n) for n in names),
            class_counts=_frozen(counts),
            num_examples=_frozen(num),
            lighting_names=tuple(lighting) if lighting else None,
            image_size=size,
            image_height=height,
            image_width=width,
            stored_frames=int(prep["frames"]) if prep.get("frames") is not None else None,
            preprocessing=_frozen(prep),
            raw=_frozen(manifest),
        )

    @classmethod
    def load(cls, data_dir: str | os.PathLike) -> DataInfo:
        """The manifest of the shards in ``data_dir`` (``fer_jax.data.manifest.load_manifest``)."""
        from fer_jax.data.manifest import load_manifest

        return cls.from_manifest(dict(load_manifest(data_dir)))

    def manifest(self) -> dict[str, Any]:
        """The manifest dict as read (a mutable copy)."""
        return dict(self.raw)

    def class_counts_of(self, split: str) -> list[int] | None:
        c = self.class_counts.get(split)
        return list(c) if c is not None else None
