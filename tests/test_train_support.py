"""Helpers for the training tests (no tests here): a tiny registered model with BatchNorm and dropout,
and an in-memory data source with real grain iterators (checkpointable positions), so the loop is
tested without shards. Also importable by the subprocess scripts of the signal and multi-device tests."""

from __future__ import annotations

import grain
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from configs.common import base_config
from fer_jax.models import registry

NUM_CLASSES = 3
SEQ, FEAT = 4, 6
LIGHTING = ["normal", "low"]


class TinyNet(nnx.Module):
    """x (B, 4, 6) -> mean over time -> Linear -> BatchNorm -> ReLU -> Dropout -> Linear -> (B, 3)."""

    def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(FEAT, 16, rngs=rngs)
        self.norm = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.fc2 = nnx.Linear(16, num_classes, rngs=rngs)

    def __call__(self, x):
        h = jnp.mean(x, axis=1)
        h = self.drop(nnx.relu(self.norm(self.fc1(h))))
        logits = self.fc2(h)
        return {
            "logits": logits,
            "aux_loss": 0.01 * jnp.mean(logits**2),
            "stats": {"h_mean": jnp.mean(h, -1)},
        }


def _build(config, *, rngs):
    return TinyNet(config.model.num_classes, rngs=rngs)


def _spec(config):
    return {"x": ((SEQ, FEAT), np.float32)}


registry.register("tiny_test", _build, _spec)


def tiny_config(**train) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = "tiny_test"
    c.model.num_classes = NUM_CLASSES
    c.data.dataset = "see"
    c.train.batch_size = 8
    c.train.num_steps = 8
    c.train.eval_every_steps = 4
    c.train.log_every_steps = 2
    c.train.ema_decay = 0.9
    c.eval.batch_size = 8
    c.optim.lr = 1e-2
    c.loss.name = "ce"
    c.loss.class_weights = "none"
    for k, v in train.items():
        c.train[k] = v
    return c


def make_examples(n: int, seed: int) -> list[dict]:
    """Learnable toy data: class prototypes + noise; lighting alternates."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(123).normal(size=(NUM_CLASSES, FEAT)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=n)
    xs = protos[labels][:, None, :] + 0.5 * rng.normal(size=(n, SEQ, FEAT)).astype(np.float32)
    return [
        {
            "x": xs[i].astype(np.float32),
            "label": np.int32(labels[i]),
            "lighting": np.int32(i % 2),
            "index": np.int32(i),
        }
        for i in range(n)
    ]


class _Finite:
    """A finite, padded evaluation iterator (the last batch padded, ``mask`` False on padding)."""

    def __init__(self, examples, batch_size):
        self.examples, self.batch_size = examples, batch_size

    def __iter__(self):
        n, bs = len(self.examples), self.batch_size
        for start in range(0, n, bs):
            rows = self.examples[start : start + bs]
            mask = np.array([True] * len(rows) + [False] * (bs - len(rows)))
            rows = rows + [rows[0]] * (bs - len(rows))
            batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            batch["mask"] = mask
            yield batch


class ToyData:
    """``fer_jax.training.data.DataSource`` over in-memory examples. ``nan_at``: train batches at that
    position and later carry NaN inputs (for the NaN test). ``seen`` records the example indices of every
    train batch drawn (the data-order check of the resume test)."""

    def __init__(self, num_train: int = 40, num_test: int = 13, nan_at: int | None = None):
        self.train = make_examples(num_train, seed=1)
        self.test = make_examples(num_test, seed=2)
        self.nan_at = nan_at
        self.seen: list[list[int]] = []

    def manifest(self, config) -> dict:
        counts = np.bincount([int(e["label"]) for e in self.train], minlength=NUM_CLASSES).tolist()
        return {"class_names": ["a", "b", "c"], "class_counts": {"train": counts}, "lighting_names": LIGHTING}

    def num_examples(self, config, split):
        return len(self.train if split == "train" else self.test)

    def train_iterator(self, config, *, process_index, process_count):
        local_bs = config.train.batch_size // process_count
        ds = (
            grain.MapDataset.source(self.train)
            .seed(config.seed)
            .shuffle()
            .repeat()[process_index::process_count]
            .batch(local_bs, drop_remainder=True)
        )
        it = ds.to_iter_dataset().__iter__()
        outer = self

        class Recording:
            def __init__(self):
                self.count = 0

            def __next__(self):
                b = next(it)
                outer.seen.append(b["index"].tolist())
                if outer.nan_at is not None and len(outer.seen) > outer.nan_at:
                    b = {**b, "x": np.full_like(b["x"], np.nan)}
                return b

            def __iter__(self):
                return self

            def get_state(self):
                return it.get_state()

            def set_state(self, s):
                it.set_state(s)

        return Recording()

    def eval_iterator(self, config, split, *, batch_size, process_index, process_count, seed, augment):
        examples = self.test[process_index::process_count]
        return iter(_Finite(examples, batch_size // process_count))


def shrink_to_fixture_shards(
    config: ml_collections.ConfigDict, data_dir, steps: int
) -> ml_collections.ConfigDict:
    """A demo config pointed at the conftest fixture shards (8 stored frames of 64 px) with a short run:
    batch 4, ``steps`` steps, an evaluation at the end, a log row every step (in place; returned)."""
    config.data.dir = str(data_dir)
    config.data.image_size = 64
    config.data.stored_frames = 8
    config.data.num_frames = min(int(config.data.num_frames), 8)
    config.train.batch_size = 4
    config.train.num_steps = steps
    config.train.eval_every_steps = steps
    config.train.log_every_steps = 1
    config.eval.batch_size = 8
    return config
