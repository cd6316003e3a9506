"""Random-access reading of the shards, without the builder code: ``tfds.builder_from_directory(dir)
.as_data_source(split)`` wrapped so that it pickles into grain worker processes.

Each worker reopens the ArrayRecord files while it unpickles the source (one thread), never lazily from
grain's reader threads: tensorflow-datasets imports its submodules lazily, and several threads importing
them at once deadlock on the import lock.

A fold's split of a ``--fold all`` DFEW build (``fold<k>_train`` / ``fold<k>_test``) is not stored: it
reads as the records of the stored split ``clips`` that the manifest's fold lists name
(``fer_jax.data.fold_splits``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from fer_jax.data.safety import check_feature_classes
from fer_jax.paths import local_data_dir


class _Subset:
    """The records of a stored split at ``positions`` (one fold's split of a ``--fold all`` build)."""

    def __init__(self, ds, positions: list[int]):
        self._ds, self._positions = ds, positions

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._ds[self._positions[int(index)]]


class ShardSource:
    """``len(source)`` examples of one split; ``source[i]`` is the record as a dict of numpy values."""

    def __init__(self, data_dir: str | os.PathLike, split: str):
        self.data_dir = str(data_dir)
        self.split = split
        self._lock = threading.Lock()
        self._ds = None
        self._len = len(self._open())

    def _open(self):
        with self._lock:
            if self._ds is None:
                import tensorflow_datasets as tfds

                check_feature_classes(self.data_dir)  # TFDS imports what features.json names
                # ArrayRecord reads local files only: a gs:// folder is read from its local mirror
                builder = tfds.builder_from_directory(os.fspath(local_data_dir(self.data_dir)))
                stored, self._positions = self.split, None
                if self.split not in builder.info.splits:  # a fold's split of a --fold all build?
                    from fer_jax.data.fold_splits import positions
                    from fer_jax.data.manifest import load_manifest

                    found = positions(load_manifest(self.data_dir), self.split)
                    if found is None:
                        raise ValueError(
                            f"no split {self.split!r} in {self.data_dir}; it has {sorted(builder.info.splits)}"
                        )
                    stored, self._positions = found
                ds = builder.as_data_source(stored)
                if self._positions is not None:
                    ds = _Subset(ds, self._positions)
                if len(ds):
                    ds[0]  # touches the decoders' lazy imports here, in one thread
                self._ds = ds
            return self._ds

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Any]:
        ds = self._ds if self._ds is not None else self._open()
        return ds[int(index)]

    def __getstate__(self):
        return {"data_dir": self.data_dir, "split": self.split, "_len": self._len}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._ds = None
        self._open()

    def __repr__(self) -> str:
        return f"ShardSource({self.data_dir!r}, {self.split!r}, {self._len} examples)"
