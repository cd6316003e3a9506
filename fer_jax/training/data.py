"""How the loop reaches the data: a small adapter over ``fer_jax.data`` that tests can replace.

``PipelineData`` forwards to ``fer_jax.data.pipeline`` / ``fer_jax.data.manifest``. Batch sizes in the
config are GLOBAL; each process's iterator yields its own ``batch_size / process_count`` rows.

A ``Run`` asks ``manifest`` once (its ``DataInfo``). Evaluation batches are dicts of numpy arrays: the
model inputs, ``label``, ``mask`` (False on padding rows), optionally ``lighting``, ``index`` (position
in the split) and ``id`` (the record's id, str; predictions.jsonl names clips by it, by ``index``
without it).
"""

from __future__ import annotations

from typing import Any, Protocol


class DataSource(Protocol):
    def manifest(self, config) -> dict: ...

    def num_examples(self, config, split: str) -> int: ...

    def train_iterator(self, config, *, process_index: int, process_count: int) -> Any: ...

    def eval_iterator(
        self,
        config,
        split: str,
        *,
        batch_size: int,
        process_index: int,
        process_count: int,
        seed: int,
        augment: bool,
    ) -> Any: ...


class PipelineData:
    """The real shards (``config.data.dir``) through ``fer_jax.data``; the manifest is read once per data
    folder and handed to every iterator (a run reads its dataset's facts once)."""

    def __init__(self):
        self._manifests: dict[str, dict] = {}

    def manifest(self, config) -> dict:
        from fer_jax.data.manifest import load_manifest

        key = str(config.data.dir)
        if key not in self._manifests:
            self._manifests[key] = dict(load_manifest(config.data.dir))
        return self._manifests[key]

    def num_examples(self, config, split: str) -> int:
        from fer_jax.data.pipeline import num_examples

        return int(num_examples(config, split, manifest=self.manifest(config)))

    def train_iterator(self, config, *, process_index: int, process_count: int):
        from fer_jax.data.pipeline import make_train_iterator

        return make_train_iterator(
            config, process_index=process_index, process_count=process_count, manifest=self.manifest(config)
        )

    def eval_iterator(self, config, split, *, batch_size, process_index, process_count, seed, augment):
        from fer_jax.data.pipeline import make_eval_iterator

        return make_eval_iterator(
            config,
            split,
            batch_size=batch_size,
            process_index=process_index,
            process_count=process_count,
            seed=seed,
            augment=augment,
            manifest=self.manifest(config),
        )
