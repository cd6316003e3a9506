"""Random-access reading of the shards, without the builder code: ``tfds.builder_from_directory(dir)
.as_data_source(split)`` wrapped so that it pickles into grain worker processes (each worker reopens the
ArrayRecord files itself)."""

from __future__ import annotations

import os
from typing import Any


class ShardSource:
    """``len(source)`` examples of one split; ``source[i]`` is the record as a dict of numpy values."""

    def __init__(self, data_dir: str | os.PathLike, split: str):
        self.data_dir = str(data_dir)
        self.split = split
        self._ds = None
        self._len = len(self._open())

    def _open(self):
        if self._ds is None:
            import tensorflow_datasets as tfds

            builder = tfds.builder_from_directory(self.data_dir)
            if self.split not in builder.info.splits:
                raise ValueError(
                    f"no split {self.split!r} in {self.data_dir}; it has {sorted(builder.info.splits)}"
                )
            self._ds = builder.as_data_source(self.split)
        return self._ds

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._open()[int(index)]

    def __getstate__(self):
        return {"data_dir": self.data_dir, "split": self.split, "_len": self._len, "_ds": None}

    def __repr__(self) -> str:
        return f"ShardSource({self.data_dir!r}, {self.split!r}, {self._len} examples)"
