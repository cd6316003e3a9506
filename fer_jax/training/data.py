"""How the loop reaches the data: a small adapter over ``fer_jax.data`` that tests can replace.

``PipelineData`` forwards to ``fer_jax.data.pipeline`` / ``fer_jax.data.manifest``. Batch sizes in the
config are GLOBAL; each process's iterator yields its own ``batch_size / process_count`` rows.
"""

from __future__ import annotations

import inspect
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


def _call(fn, *args, **kwargs):
    """Calls ``fn`` with the keyword arguments it accepts (the pipeline may not take all of them)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


class PipelineData:
    """The real shards (``config.data.dir``) through ``fer_jax.data``."""

    def manifest(self, config) -> dict:
        from fer_jax.data.manifest import load_manifest

        return dict(load_manifest(config.data.dir))

    def num_examples(self, config, split: str) -> int:
        from fer_jax.data.pipeline import num_examples

        return int(num_examples(config, split))

    def train_iterator(self, config, *, process_index: int, process_count: int):
        from fer_jax.data.pipeline import make_train_iterator

        return _call(make_train_iterator, config, process_index=process_index, process_count=process_count)

    def eval_iterator(self, config, split, *, batch_size, process_index, process_count, seed, augment):
        from fer_jax.data.pipeline import make_eval_iterator

        return _call(
            make_eval_iterator,
            config,
            split,
            batch_size=batch_size,
            process_index=process_index,
            process_count=process_count,
            seed=seed,
            augment=augment,
        )
