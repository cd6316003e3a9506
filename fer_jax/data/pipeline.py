"""grain input pipelines over the shards: training (global shuffle per epoch with the seed, one slice per
JAX process, augmentation, batching without remainder, worker processes, a checkpointable iterator) and
evaluation (every example exactly once across processes, the last batch padded with ``mask`` False).

Batches are dicts of numpy arrays (docs/architecture.md). With ``train.normalize_on_device`` (the default)
``frames`` / ``rgb`` leave as uint8 and ``event`` in its stored dtype (uint8 JPEG event frames, float16
voxel grids; float32 once augmentation warped them): the jitted step normalises them
(``fer_jax.training.device_input``, the same numbers). With it False they are float32 as listed here:
- DFEW: ``frames`` ``(B, T, S, S, 3)`` float32 ImageNet-normalised, ``landmarks`` ``(B, T, 68, 2)``
  float32 in [0, 1], ``label`` int32 ``(B,)``, ``mask`` bool ``(B,)`` (+ ``event`` ``(B, T, S, S, bins)``
  when the shards were built with ``--simulate-events``).
- SEE / DSEE: ``rgb`` ``(B, m, H, W, 3)``, ``event`` ``(B, m, H, W, C)`` float32, ``label``, ``lighting``
  int32, ``mask``; H x W = ``data.image_size`` x ``data.image_width`` (0: square, S x S), as the shards
  store them (``data_prep.build --resize shorter`` keeps the aspect: 100 x 133; no augmentation then). The m frames come from the K stored ones as the public loaders pick them: every 4th
  frame from a random offset, then m spread from its first to its last frame (offset 0 for evaluation).
  ``data.see_sampling = "authors"`` picks them as the official code does instead (fer_jax.data.see_sampling).

Evaluation batches also carry ``index`` int32 ``(B,)``: the record's position in the split, and ``id``
str ``(B,)``: the record's id (for per-example outputs such as ``predictions.jsonl``; padding rows repeat
a real index and id with ``mask`` False).

Config fields read: ``data.{dataset, dir, num_frames, image_size, image_width, num_workers, augment,
see_sampling}``, ``train.{batch_size, normalize_on_device}``, ``eval.batch_size``, ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np

from fer_jax.data import augment as aug
from fer_jax.data import info as info_lib
from fer_jax.data import normalize
from fer_jax.data import see_sampling as see_sampling_lib
from fer_jax.data.constants import NUM_LANDMARKS, TEMPLATE_68
from fer_jax.data.manifest import load_manifest
from fer_jax.data.schema import decode_frames
from fer_jax.data.source import ShardSource
from fer_jax.preprocess.frames import sample_indices


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What the per-example transform needs, as plain values (pickled into worker processes)."""

    dataset: str
    num_frames: int
    image_size: int  # H (the side of square frames)
    augment: bool
    event_mean: float | None = None
    event_std: float | None = None
    see_sampling: str = "stride4"  # SEE: stride4 | authors (fer_jax.data.see_sampling)
    # False: frames stay uint8 and events in their stored dtype; the jitted step normalises them
    # (fer_jax.training.device_input, train.normalize_on_device)
    normalize: bool = True


def _spec(config, manifest: Mapping[str, Any], augment: bool) -> _Spec:
    dataset = config.data.dataset
    if dataset != manifest.get("dataset") and not (
        dataset in ("see", "dsee") and manifest.get("dataset") in ("see", "dsee")
    ):
        raise ValueError(
            f"config.data.dataset={dataset!r} but {config.data.dir} holds {manifest.get('dataset')!r}"
        )
    prep = manifest.get("preprocessing", {})
    stored_size = prep.get("size")
    height = int(config.data.image_size)
    width = int(config.data.get("image_width", 0) or height)  # 0 / absent: square frames
    if stored_size is not None:
        stored_hw = info_lib.stored_hw(prep)  # square builds (all DFEW ones, older SEE ones): the side
        if height == width and stored_hw == (stored_size, stored_size) and stored_size != height:
            raise ValueError(
                f"config.data.image_size={config.data.image_size} but the shards hold {stored_size}px frames"
            )
        if stored_hw != (height, width):
            raise ValueError(
                f"config.data.image_size x image_width = {height} x {width} (0: square) but the shards hold "
                f"{stored_hw[0]} x {stored_hw[1]} (H x W) frames; set --config.data.image_size="
                f"{stored_hw[0]} --config.data.image_width={stored_hw[1] if stored_hw[0] != stored_hw[1] else 0}"
            )
    if augment and height != width:
        raise ValueError(
            f"config.data.augment needs square frames, but these are {height} x {width} (H x W); "
            "set --config.data.augment=False (the authors' input path has no augmentation)"
        )
    norm = manifest.get("normalization", {}).get("event", {})
    see_sampling = str(config.data.get("see_sampling", "stride4"))
    if see_sampling not in see_sampling_lib.SEE_SAMPLINGS:
        raise ValueError(
            f"config.data.see_sampling must be one of {see_sampling_lib.SEE_SAMPLINGS}, got {see_sampling!r}"
        )
    stored = manifest.get("preprocessing", {}).get("frames")
    if dataset in ("see", "dsee") and see_sampling == "authors" and stored not in (0, None):
        raise ValueError(
            f"config.data.see_sampling='authors' picks raw frames 12 apart, but {config.data.dir} keeps "
            f"{stored} frames per sequence; build it with data_prep.build --frames 0 (all frames)"
        )
    train = config.get("train") or {}
    return _Spec(
        normalize=not bool(train.get("normalize_on_device", True)),
        see_sampling=see_sampling,
        dataset=dataset,
        num_frames=int(config.data.num_frames),
        image_size=int(config.data.image_size),
        augment=bool(augment),
        event_mean=norm.get("mean"),
        event_std=norm.get("std"),
    )


def _to_model_inputs(ex: dict[str, Any], spec: _Spec, rng: np.random.Generator | None) -> dict[str, Any]:
    """One record -> one example of the batch (decode, sample, augment, normalise)."""
    size = spec.image_size
    params = aug.sample_params(rng, size) if (spec.augment and rng is not None) else None
    out: dict[str, Any] = {"label": np.int32(ex["label"]), "mask": np.bool_(True)}
    if spec.dataset == "dfew":
        stored = ex["frames"]
        n = len(stored)
        idx = np.arange(n) if n == spec.num_frames else sample_indices(n, spec.num_frames)
        frames = decode_frames(stored, idx)
        lm = (
            ex["landmarks"][idx]
            if "landmarks" in ex
            else np.broadcast_to(TEMPLATE_68, (len(idx), NUM_LANDMARKS, 2))
        )
        event = _voxels(ex["event"][idx], spec, params) if "event" in ex else None
        if params is not None:
            frames = aug.photometric(aug.geometric(frames, params), params)
            lm = aug.geometric_landmarks(lm, params, size)
            if event is not None:
                event = aug.geometric(event, params)
        out["frames"] = normalize.imagenet(frames) if spec.normalize else frames
        out["landmarks"] = np.asarray(lm, np.float32)
        if event is not None:
            out["event"] = (
                normalize.see_events(event, spec.event_mean, spec.event_std) if spec.normalize else event
            )
        return out
    # SEE / DSEE
    k = len(ex["rgb"])
    if "event" in ex:
        k = min(k, len(ex["event"]))
    if spec.see_sampling == "authors":
        idx = see_sampling_lib.authors_indices(k, spec.num_frames, rng)
    else:
        idx = sample_indices(k, spec.num_frames, mode="stride4", rng=rng)
    rgb = decode_frames(ex["rgb"], idx)
    stored_ev = ex["event"]
    if np.asarray(stored_ev).dtype == object:
        event = decode_frames(stored_ev, idx)
    else:  # float16 voxel grids (cv2 warps float32, not float16)
        event = _voxels(np.asarray(stored_ev)[idx], spec, params)
    if params is not None:
        # SEE: temporal sampling + flip + affine, the same on both modalities; colour only on RGB
        rgb = aug.photometric(aug.geometric(rgb, params), params)
        event = aug.geometric(event, params)
    if spec.normalize:
        out["rgb"] = normalize.see_frames(rgb)
        out["event"] = normalize.see_events(event, spec.event_mean, spec.event_std)
    else:
        out["rgb"], out["event"] = rgb, event
    out["lighting"] = np.int32(ex["lighting"])
    return out


def prepare_example(
    record: dict[str, Any], config, manifest: dict, *, rng: np.random.Generator | None = None
):
    """One stored record (as the builder writes it) -> one example of model inputs, without batch axis.

    The same transform the evaluation batches use (``rng`` None: no augmentation, deterministic temporal
    sampling); predict calls it on a record it built from a video so that inference sees the same inputs.
    """
    return _to_model_inputs(record, _spec(config, manifest, augment=rng is not None), rng)


def _voxels(event: np.ndarray, spec: _Spec, params) -> np.ndarray:
    """A stored voxel-grid array as the batch carries it: float32 when the host normalises or augments
    (cv2 warps float32, not float16) or when it is not float (it holds voxel values whatever its dtype);
    otherwise its stored float dtype, which the jitted step normalises."""
    if params is not None or spec.normalize or event.dtype.kind != "f":
        return event.astype(np.float32)
    return event


def _ensure_flags_parsed(num_workers: int) -> None:
    """grain worker processes read absl flags; a plain script that never parsed them would fail there."""
    if num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()


class _TrainMap(grain.transforms.RandomMap):
    def __init__(self, spec: _Spec):
        self.spec = spec

    def random_map(self, element, rng: np.random.Generator):
        return _to_model_inputs(element, self.spec, rng)


class _PaddedSource:
    """This process's evaluation indices padded to whole batches; padding rows repeat a real record and
    carry ``__pad__`` so the map sets ``mask`` False."""

    def __init__(self, source: ShardSource, indices: np.ndarray):
        self.source = source
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        ex = dict(self.source[i if i >= 0 else -i - 1])
        ex["__pad__"] = i < 0
        ex["__index__"] = i if i >= 0 else -i - 1
        return ex


def _process(process_index, process_count) -> tuple[int, int]:
    pi = jax.process_index() if process_index is None else int(process_index)
    pc = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= pi < pc:
        raise ValueError(f"process_index {pi} outside [0, {pc})")
    return pi, pc


def local_batch_size(batch_size: int, process_count: int) -> int:
    """Each process's share of a GLOBAL batch; ValueError unless it splits evenly (the one home of the rule:
    ``fer_jax.training.mesh.check_batch_size`` applies it too)."""
    if batch_size < process_count or batch_size % process_count:
        raise ValueError(f"batch size {batch_size} is not a multiple of the {process_count} processes")
    return batch_size // process_count


def num_examples(config, split: str, *, manifest: Mapping[str, Any] | None = None) -> int:
    """Examples in ``split`` of ``config.data.dir`` (from ``manifest``, read from the folder when None)."""
    m = load_manifest(config.data.dir) if manifest is None else manifest
    if split not in m.get("num_examples", {}):
        raise ValueError(
            f"no split {split!r} in {config.data.dir}; it has {sorted(m.get('num_examples', {}))}"
        )
    return int(m["num_examples"][split])


def make_train_iterator(
    config,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    manifest: Mapping[str, Any] | None = None,
):
    """Infinite iterator of training batches of ``train.batch_size // process_count`` examples; epochs are
    reshuffled with ``config.seed``; ``get_state()`` / ``set_state()`` restore exactly the next batch."""
    pi, pc = _process(process_index, process_count)
    manifest = load_manifest(config.data.dir) if manifest is None else manifest
    spec = _spec(config, manifest, augment=bool(config.data.augment))
    source = ShardSource(config.data.dir, config.data.train_split)
    local = local_batch_size(int(config.train.batch_size), pc)
    if len(source) // pc < local:
        raise ValueError(f"{len(source)} training examples cannot fill a batch of {local} on {pc} processes")
    _ensure_flags_parsed(int(config.data.num_workers))
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=grain.sharding.ShardOptions(shard_index=pi, shard_count=pc, drop_remainder=True),
        shuffle=True,
        num_epochs=None,
        seed=int(config.seed),
    )
    loader = grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[_TrainMap(spec), grain.transforms.Batch(local, drop_remainder=True)],
        worker_count=int(config.data.num_workers),
    )
    return iter(loader)


class _EvalLoader:
    """Finite iterable of padded evaluation batches; iterating again gives the same batches again.

    ``reuse`` (deterministic evaluation): ONE grain iterator over an endless repetition of the padded
    split, of which each pass takes exactly ``num_batches`` batches (one epoch), so the worker processes
    start once per loader, not once per evaluation. A pass left unfinished drops the iterator (the next
    pass starts a new one at the split's beginning). Without ``reuse`` (random temporal sampling) each pass
    is a fresh single-epoch iterator, so that a seed always gives the same draws.
    """

    def __init__(self, loader, num_batches: int, num_real: int, *, reuse: bool = False):
        self._loader = loader
        self._reuse = reuse
        self._it = None
        self.num_batches = num_batches
        self.num_real = num_real  # real examples of this process
        self.iterators_started = 0  # grain iterators (worker start-ups) so far

    def __len__(self) -> int:
        return self.num_batches

    def _start(self):
        self.iterators_started += 1
        return iter(self._loader)

    def __iter__(self):
        if not self._reuse:
            yield from map(_unpad, self._start())
            return
        if self._it is None:
            self._it = self._start()
        done = 0
        try:
            while done < self.num_batches:
                batch = _unpad(next(self._it))
                done += 1
                yield batch
        finally:
            if done < self.num_batches:
                self._it = None  # stopped mid-pass: the position is unknown, start over next time

    def close(self) -> None:
        """Drops the live iterator (its worker processes end)."""
        self._it = None


def _unpad(batch: dict) -> dict:
    pad = batch.pop("__pad__", None)
    if pad is not None:
        batch["mask"] = batch["mask"] & ~np.asarray(pad, bool)
    return batch


def make_eval_iterator(
    config,
    split: str,
    *,
    batch_size: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    seed: int | None = None,
    augment: bool = False,
    manifest: Mapping[str, Any] | None = None,
) -> _EvalLoader:
    """Evaluation batches of ``batch_size // process_count`` (default ``eval.batch_size``): process p gets
    examples p, p + P, ...; every process yields the same number of batches, the last ones padded with
    ``mask`` False. ``augment=True`` uses random temporal sampling seeded by ``seed`` (default
    ``config.seed``) — the stochastic passes of the official MCO-E Net protocol; geometry is left alone."""
    pi, pc = _process(process_index, process_count)
    manifest = load_manifest(config.data.dir) if manifest is None else manifest
    spec = dataclasses.replace(_spec(config, manifest, augment=False), augment=False)
    source = ShardSource(config.data.dir, split)
    local = local_batch_size(int(batch_size or config.eval.batch_size), pc)
    n = len(source)
    per_process = math.ceil(n / pc)
    num_batches = max(1, math.ceil(per_process / local))
    mine = np.arange(pi, n, pc)
    pad_with = mine[0] if len(mine) else 0
    padded = np.full(num_batches * local, -pad_with - 1, np.int64)
    padded[: len(mine)] = mine
    if augment:
        # random temporal sampling only: the spatial augmentation is for training
        op, op_seed = _KeepPadRandomMap(spec), int(config.seed if seed is None else seed)
    else:
        op, op_seed = _KeepPadMap(spec), None
    _ensure_flags_parsed(int(config.data.num_workers))
    loader = grain.DataLoader(
        data_source=_PaddedSource(source, padded),
        # deterministic passes repeat the padded split endlessly (whole batches per epoch: len(padded) is
        # a multiple of `local`), so one iterator and its workers serve every evaluation
        sampler=grain.samplers.IndexSampler(
            num_records=len(padded), shuffle=False, num_epochs=1 if augment else None, seed=op_seed
        ),
        operations=[op, grain.transforms.Batch(local, drop_remainder=False)],
        worker_count=int(config.data.num_workers),
    )
    return _EvalLoader(loader, num_batches, len(mine), reuse=not augment)


def _pop_meta(element) -> tuple[bool, int]:
    return bool(element.pop("__pad__", False)), int(element.pop("__index__", -1))


def _record_id(element) -> np.str_:
    """The record's ``id`` as text (the shards store it as bytes); empty when the record has none."""
    rid = element.get("id", "")
    rid = rid.item() if isinstance(rid, np.ndarray) else rid
    return np.str_(rid.decode() if isinstance(rid, bytes) else str(rid))


class _KeepPadMap(grain.transforms.Map):
    """Deterministic evaluation map that carries the padding flag through."""

    def __init__(self, spec: _Spec):
        self.spec = spec

    def map(self, element):
        pad, index = _pop_meta(element)
        out = _to_model_inputs(element, self.spec, None)
        out["__pad__"], out["index"], out["id"] = np.bool_(pad), np.int32(index), _record_id(element)
        return out


class _KeepPadRandomMap(grain.transforms.RandomMap):
    """Evaluation with random temporal sampling (official MCO-E Net stochastic passes), padding flag kept."""

    def __init__(self, spec: _Spec):
        self.spec = spec

    def random_map(self, element, rng: np.random.Generator):
        pad, index = _pop_meta(element)
        out = _to_model_inputs(element, self.spec, rng)
        out["__pad__"], out["index"], out["id"] = np.bool_(pad), np.int32(index), _record_id(element)
        return out
