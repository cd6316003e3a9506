"""The Run: one object that every entry point (train, evaluate, predict, interpret) goes through.

A Run owns the resolved config, the dataset facts (``DataInfo``, read ONCE from the manifest), the mesh,
the model definitions and train state, the checkpoints, pretrained backbone loading (fresh starts only)
and evaluation::

    run = Run.create(config, workdir)                  # a new run, or the one in workdir resumed
    run = Run.restore(workdir, checkpoint="best")      # a trained run for evaluation / inference
    metrics, outputs = run.evaluate("test", passes=1)

State layout: ``fer_jax.training.state`` (``{"step", "params", "rest", "opt_state", "ema"}``, replicated).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from fer_jax.cli import read_json
from fer_jax.data.fold_splits import select_fold
from fer_jax.data.info import DataInfo
from fer_jax.models import registry
from fer_jax.paths import as_path
from fer_jax.training import checkpoint as ckpt_lib
from fer_jax.training import device_input, evaluation, optim, profiling, steps
from fer_jax.training import mesh as mesh_lib
from fer_jax.training import state as state_lib
from fer_jax.training.data import DataSource, PipelineData
from fer_jax.training.validate import check_config


def write_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Writes ``<workdir>/config.json`` (process 0; creates ``workdir``)."""
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote to ``<workdir>/config.json``."""
    path = as_path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a training workdir?")
    return ml_collections.ConfigDict(read_json(path, "the run's config"))  # a damaged file: one line


def check_same_data(workdir: Path, manifest: dict[str, Any], data_dir: str) -> None:
    """A resume must read the data its checkpoint was trained on: ``ValueError`` (one line) when the run's
    ``manifest.json`` names another dataset, other classes, other split sizes or other preprocessing than
    ``manifest`` (the shards' folder itself may have moved: it is not compared). Without the grain
    iterator's multi-line sampler error, and before the run's files are replaced."""
    path = workdir / "manifest.json"
    if not path.is_file():
        return
    old = read_json(path, "the run's manifest")
    new = json.loads(json.dumps(manifest, default=str))  # as the run wrote it
    for key in ("dataset", "class_names", "num_examples", "preprocessing"):
        a, b = old.get(key), new.get(key)
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"{workdir} was trained on other data than {data_dir} ({key}: {json.dumps(a)[:80]} in the run, "
                f"{json.dumps(b)[:80]} now); resume with the run's data or give a new --workdir"
            )


def check_same_split(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """A resume must train on the split its checkpoint was trained on: the five DFEW folds of a ``--fold all``
    build share one manifest, so :func:`check_same_data` cannot tell them apart. ``ValueError`` (one line)
    when the run's ``config.json`` names another ``data.fold`` / ``data.train_split``."""
    if not (workdir / "config.json").is_file():
        return
    old = load_config(workdir).data
    for key in ("fold", "train_split"):
        a, b = old.get(key), config.data.get(key)
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"{workdir} was trained with data.{key}={a}, not {b}; resume with --config.data.{key}={a} "
                "or give a new --workdir"
            )


def run_lengths(config: ml_collections.ConfigDict, num_train: int) -> dict[str, int]:
    """Steps per epoch, total steps, eval and checkpoint intervals, optimizer updates."""
    bs = int(config.train.batch_size)
    steps_per_epoch = num_train // bs
    if steps_per_epoch < 1:
        raise ValueError(f"train split has {num_train} examples, fewer than one batch of {bs}")
    total = int(config.train.num_steps) or int(config.train.num_epochs) * steps_per_epoch
    eval_every = int(config.train.eval_every_steps) or steps_per_epoch
    accum = max(int(config.train.grad_accum_steps), 1)
    return {
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total,
        "eval_every": eval_every,
        "checkpoint_every": int(config.train.checkpoint_every_steps) or eval_every,
        "log_every": max(int(config.train.log_every_steps), 1),
        "optimizer_steps": max(math.ceil(total / accum), 1),
        "optimizer_steps_per_epoch": max(steps_per_epoch // accum, 1),
    }


def build_model_and_state(
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    *,
    total_updates: int,
    updates_per_epoch: int,
    abstract: bool = False,
) -> tuple[state_lib.ModelDefs, dict, optax.GradientTransformation, optax.Schedule]:
    """Model -> ``(defs, replicated state, tx, schedule)``. Same seed -> same state on every process.

    One ``init`` function builds the model, optimizer state and EMA. ``abstract=True`` traces it with
    ``jax.eval_shape`` into ``jax.ShapeDtypeStruct`` leaves (replicated shardings) without running any
    initializer: the restore target of a checkpoint. A concrete state runs it eagerly: the initializers
    draw the same numbers traced or not (``fer_jax.models.layers``: same seed, same model), and eager
    construction is faster on a CPU than compiling the whole init as one program (demo configs measured
    on 2 cores: MambaFER 21 s eager vs 34 s jitted, MCO-E Net 14 s vs 32 s).
    """
    held: dict[str, Any] = {}
    ema = float(config.train.ema_decay) > 0

    def init() -> dict:
        model = registry.build(config, rngs=nnx.Rngs(config.seed, dropout=config.seed + 1))
        defs, params, rest = state_lib.split_model(model)
        # the optimizer's masks are plain Python values of the params' structure: safe to keep from the trace
        tx, schedule = optim.make_optimizer(
            config, params, total_steps=total_updates, steps_per_epoch=updates_per_epoch
        )
        held.update(defs=defs, tx=tx, schedule=schedule)
        return state_lib.initial_state(params, rest, tx, ema=ema)

    sharding = mesh_lib.replicated(mesh)
    if abstract:
        state = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), jax.eval_shape(init)
        )
    else:
        state = mesh_lib.put_replicated(init(), mesh)
    return held["defs"], state, held["tx"], held["schedule"]


def load_pretrained(config: ml_collections.ConfigDict, defs: state_lib.ModelDefs, state: dict,
                    tx: optax.GradientTransformation, mesh: Mesh) -> tuple[dict, list[str]]:  # fmt: skip
    """Copies converted backbone weights into a fresh state (``registry.pretrained_targets``).

    Returns ``(state, directories loaded)``; the optimizer state and EMA are rebuilt from the loaded
    parameters. A registry without ``pretrained_targets`` (or a model with no targets) loads nothing.
    """
    targets_of = getattr(registry, "pretrained_targets", None)
    if targets_of is None:
        return state, []
    model = nnx.merge(defs.train, state["params"], state["rest"], copy=True)
    targets = list(targets_of(model, config) or [])
    if not targets:
        return state, []
    from fer_jax.convert import load_backbone_into  # conversion code only when weights are given

    for module, directory in targets:
        load_backbone_into(module, directory)
    _, params, rest = state_lib.split_model(model)
    params, rest = mesh_lib.put_replicated(jax.device_get((params, rest)), mesh)
    ema = state.get("ema") is not None
    state = jax.jit(
        lambda p, r: state_lib.initial_state(p, r, tx, ema=ema), out_shardings=mesh_lib.replicated(mesh)
    )(params, rest)
    return state, [str(d) for _, d in targets]


def resolve_checkpoint(ckpts: ckpt_lib.RunCheckpoints, checkpoint: str | int) -> tuple[str, int]:
    """``best`` (falls back to ``latest`` before the first evaluation), ``latest`` or a step number ->
    ``(manager name, step)``."""
    checkpoint = str(checkpoint)
    if checkpoint == "best":
        step = ckpts.latest_step("best")
        if step is not None:
            return "best", step
        checkpoint = "latest"
    if checkpoint == "latest":
        step = ckpts.latest_step("latest")
        if step is None:
            raise FileNotFoundError("the run has no checkpoint yet")
        return "latest", step
    try:
        step = int(checkpoint)
    except ValueError:
        raise ValueError(f"--checkpoint must be best, latest or a step number, got {checkpoint!r}") from None
    if step in ckpts.steps("latest"):
        return "latest", step
    if step in ckpts.steps("best"):
        return "best", step
    raise FileNotFoundError(
        f"no checkpoint at step {step}; kept: {sorted(set(ckpts.steps('latest') + ckpts.steps('best')))}"
    )


def _split_size(info: DataInfo, data: DataSource, config: ml_collections.ConfigDict, split: str) -> int:
    """Examples in ``split``: the manifest's count, else the data source's (a fold's list of clips)."""
    n = info.num_examples.get(split)
    return int(n if n is not None else data.num_examples(config, split))


def _with_num_classes(config: ml_collections.ConfigDict, info: DataInfo) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``model.num_classes`` is the manifest's class count."""
    config = config.copy_and_resolve_references()
    given = config.model.get("num_classes")
    if given is not None and int(given) != info.num_classes:
        raise ValueError(
            f"config.model.num_classes={given} but the data has {info.num_classes} classes "
            f"({', '.join(info.class_names)})"
        )
    config.model.num_classes = info.num_classes
    return config


@dataclasses.dataclass
class Run:
    """A training run (``create``) or a trained one (``restore``); see the module docstring.

    Attributes: ``config`` (resolved; ``model.num_classes`` from the data), ``workdir``, ``info``
    (``DataInfo``), ``data`` (a ``DataSource``), ``mesh``, ``defs`` (train / eval graph definitions),
    ``state`` (replicated train state), ``tx`` / ``schedule``, ``step`` (the state's step), ``lengths``
    (``run_lengths``; training runs only), ``checkpoints`` (open for training runs, closed after restore),
    ``resumed`` (``(iter_state, meta)`` of the checkpoint a training run resumed from, else None),
    ``pretrained`` (backbone weight directories loaded on a fresh start), ``notes`` (one line per unreadable
    checkpoint step that a resume, or a restore of ``latest``, skipped, for the caller to print).
    """

    config: ml_collections.ConfigDict
    workdir: Path
    info: DataInfo
    data: DataSource
    mesh: Mesh
    defs: state_lib.ModelDefs
    state: dict
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    step: int = 0
    lengths: dict[str, int] | None = None
    checkpoints: ckpt_lib.RunCheckpoints | None = None
    resumed: tuple[Any, dict] | None = None
    pretrained: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    # deterministic evaluation loaders by (split, global batch size): built once, iterated per evaluation
    _eval_loaders: dict = dataclasses.field(default_factory=dict, repr=False)

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, config: ml_collections.ConfigDict, workdir: str | Path, *,
               data: DataSource | None = None) -> Run:  # fmt: skip
        """A training run in ``workdir``: resumes from its newest ``latest`` checkpoint when there is one,
        else starts fresh (loading pretrained backbones). Writes ``config.json`` and ``manifest.json``.

        Raises ValueError on an inconsistent config (class count, batch sizes, too little data).
        """
        mesh_lib.maybe_initialize_distributed()
        workdir = as_path(workdir)  # gs://b/run stays remote (Path.absolute() made it ./gs:/b/run)
        data = data or PipelineData()
        # everything is validated (config ranges, data, checkpoint) before the first write into workdir:
        # a refused resume must leave an intact run as it was
        check_config(config)
        profiling.parse_profile_steps(config.train.get("profile_steps", ""))  # refused before any write
        profiling.use_compilation_cache(config)
        manifest = data.manifest(config)
        info = DataInfo.from_manifest(manifest)
        config = _with_num_classes(select_fold(config, manifest), info)  # data.fold -> the fold's splits
        mesh = mesh_lib.make_mesh()
        mesh_lib.check_batch_size(int(config.train.batch_size), mesh)
        mesh_lib.check_batch_size(int(config.eval.batch_size), mesh)
        eval_split = config.data.eval_split
        lengths = run_lengths(config, _split_size(info, data, config, config.data.train_split))
        # an evaluation split that is missing would otherwise fail at the first evaluation, after training
        if _split_size(info, data, config, eval_split) < 1:
            raise ValueError(f"the evaluation split {eval_split!r} of {config.data.dir} has no examples")
        ckpts = ckpt_lib.RunCheckpoints(workdir, keep=int(config.train.keep_checkpoints))
        notes: list[str] = []
        try:
            has_checkpoint = bool(ckpts.steps("latest"))
            if has_checkpoint:
                check_same_data(workdir, manifest, str(config.data.dir))
                check_same_split(workdir, config)
            defs, state, tx, schedule = build_model_and_state(
                config,
                mesh,
                total_updates=lengths["optimizer_steps"],
                updates_per_epoch=lengths["optimizer_steps_per_epoch"],
                abstract=has_checkpoint,  # a resume restores into shapes: no initialisation to pay for
            )
            resumed, pretrained, latest = None, [], 0
            if not has_checkpoint:
                state, pretrained = load_pretrained(config, defs, state, tx, mesh)
            else:
                latest, state, iter_state, meta, notes = ckpts.restore_latest_good("latest", state)
                resumed = (iter_state, meta)
                ckpts.set_aside_newer("latest", latest)  # unreadable steps are kept, renamed, never deleted
        except BaseException:
            ckpts.close()
            raise
        write_config(config, workdir)
        if jax.process_index() == 0:  # predict needs class names and preprocessing even when shards are gone
            (workdir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        return cls(config, workdir, info, data, mesh, defs, state, tx, schedule, step=int(latest),
                   lengths=lengths, checkpoints=ckpts, resumed=resumed, pretrained=pretrained,
                   notes=notes)  # fmt: skip

    @classmethod
    def restore(cls, workdir: str | Path, checkpoint: str | int = "best", *,
                data: DataSource | None = None) -> Run:  # fmt: skip
        """The trained run in ``workdir`` at ``checkpoint`` (``best`` (falls back to ``latest``), ``latest``
        or a step). Dataset facts come from ``data`` when given, else the run's ``manifest.json`` copy."""
        mesh_lib.maybe_initialize_distributed()
        workdir = as_path(workdir)
        config = load_config(workdir)
        if not (workdir / "checkpoints").exists():
            raise FileNotFoundError(f"no checkpoints in {workdir}")
        profiling.use_compilation_cache(config)
        if data is None and (workdir / "manifest.json").exists():
            manifest = read_json(workdir / "manifest.json", "the run's manifest")
            data = PipelineData()
        else:
            data = data or PipelineData()
            manifest = data.manifest(config)  # cached by the source: its iterators do not read it again
        info = DataInfo.from_manifest(manifest)
        config = _with_num_classes(config, info)
        mesh = mesh_lib.make_mesh()
        ckpts = ckpt_lib.RunCheckpoints(workdir, read_only=True)
        try:
            which, step = resolve_checkpoint(ckpts, checkpoint)
            # the optimizer's structure does not depend on the run length: any length rebuilds the target
            defs, target, tx, schedule = build_model_and_state(
                config, mesh, total_updates=1, updates_per_epoch=1, abstract=True
            )
            notes: list[str] = []
            if which == "latest" and str(checkpoint) in ("best", "latest"):
                # as a resume: an unreadable newest step falls back to the previous kept one, with a note
                # (nothing is renamed here: a restored run is read-only)
                step, state, _, _, notes = ckpts.restore_latest_good("latest", target)
            else:
                try:
                    state, _, _ = ckpts.restore(which, step, target)
                except ckpt_lib.CheckpointUnreadableError as e:
                    if which != "best":
                        raise
                    # no silent switch to another step: the user chooses, and is told how
                    raise ckpt_lib.CheckpointUnreadableError(
                        f"best {e}; --checkpoint latest reads the newest readable kept step"
                    ) from e
        finally:
            ckpts.close()
        return cls(config, workdir, info, data, mesh, defs, state, tx, schedule, step=int(step), notes=notes)

    # -- model --------------------------------------------------------------------------------------------
    @cached_property
    def input_names(self) -> list[str]:
        """The model's ``__call__`` keywords (``registry.input_spec``)."""
        return list(registry.input_spec(self.config))

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def eval_params(self) -> Any:
        """The parameters evaluation uses: the EMA when kept."""
        return state_lib.eval_params(self.state)

    def model(self) -> nnx.Module:
        """The model in eval mode holding the evaluation parameters (for Grad-CAM and friends)."""
        return nnx.merge(self.defs.eval, self.eval_params, self.state["rest"])

    @cached_property
    def normalize(self) -> device_input.DeviceNormalize | None:
        """The steps' input normalisation (``train.normalize_on_device``; None: the host normalises)."""
        return device_input.from_manifest(self.config, self.info.manifest())

    def normalized_inputs(self, example: dict) -> dict[str, np.ndarray]:
        """``example`` (host arrays, any batch axes) with its model inputs normalised as the steps do: for
        callers that run the model outside them (Grad-CAM)."""
        if self.normalize is None:
            return dict(example)
        return {k: np.asarray(v) for k, v in self.normalize(example).items()}

    @cached_property
    def eval_step(self):
        """Jitted ``eval_step(params, rest, batch) -> outputs`` (``steps.make_eval_step``)."""
        return steps.jit_eval_step(
            steps.make_eval_step(self.defs, self.input_names, self.normalize), self.mesh
        )

    def make_train_step(self, loss_fn: steps.LossFn):
        """Jitted ``train_step(state, batch) -> (state, metrics)`` with the state donated."""
        return steps.jit_train_step(
            steps.make_train_step(
                self.defs,
                self.tx,
                self.schedule,
                loss_fn,
                self.input_names,
                ema_decay=float(self.config.train.ema_decay),
                grad_accum_steps=int(self.config.train.grad_accum_steps),
                normalize=self.normalize,
            ),
            self.mesh,
        )

    def device_batch(self, batch: dict) -> dict:
        """A host batch placed sharded on the mesh (model inputs and ``BATCH_KEYS`` only)."""
        return evaluation.device_batch(batch, self.input_names, self.mesh)

    def predict_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Eval outputs (``probs`` (B, C), ``pred``, ...) of one host batch whose size is a multiple of
        the device count."""
        out = self.eval_step(self.eval_params, self.state["rest"], self.device_batch(batch))
        return jax.tree.map(np.asarray, out)

    # -- data and evaluation ------------------------------------------------------------------------------
    def train_iterator(self):
        return self.data.train_iterator(
            self.config, process_index=jax.process_index(), process_count=jax.process_count()
        )

    def eval_iterator(self, split: str, *, batch_size: int | None = None, pass_index: int = 0,
                      augment: bool = False):  # fmt: skip
        """This process's padded evaluation batches of ``split`` (seed ``config.seed + pass_index``).

        A deterministic loader (``augment`` False) is built once per split and batch size and handed out
        again (its grain workers start once), when the data source returns an iterable that may be
        iterated again (``fer_jax.data.pipeline``'s loaders are; a one-shot iterator is rebuilt each time).
        """
        bs = int(batch_size or self.config.eval.batch_size)
        key = (split, bs)
        if not augment and key in self._eval_loaders:
            return self._eval_loaders[key]
        loader = self.data.eval_iterator(
            self.config,
            split,
            batch_size=bs,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            seed=int(self.config.seed) + pass_index,
            augment=augment,
        )
        if not augment and not isinstance(loader, Iterator):
            self._eval_loaders[key] = loader
        return loader

    def evaluate(self, split: str | None = None, passes: int = 1, *, batch_size: int | None = None,
                 augment: bool | None = None) -> tuple[dict, dict]:  # fmt: skip
        """``passes`` passes over ``split`` (default the config's eval split) with the evaluation params.

        ``augment`` (default ``passes > 1``): random temporal sampling per pass (the stochastic passes of
        the official MCO-E Net protocol). Returns ``(metrics, outputs)``: ``metrics`` as
        ``evaluation.evaluate_passes``; ``outputs`` numpy arrays over the split's examples, ``probs``
        (N, C) the mean over passes, ``pred``, ``label``, ``index``, ``id``, ``lighting`` where present.
        """
        split = split or self.config.data.eval_split
        bs = int(batch_size or self.config.eval.batch_size)
        mesh_lib.check_batch_size(bs, self.mesh)
        passes = max(int(passes), 1)
        augment = passes > 1 if augment is None else bool(augment)
        return evaluation.evaluate_passes(
            lambda p: self.eval_iterator(split, batch_size=bs, pass_index=p, augment=augment),
            self.eval_step,
            self.eval_params,
            self.state["rest"],
            passes=passes,
            input_names=self.input_names,
            mesh=self.mesh,
            num_classes=self.info.num_classes,
            class_names=self.class_names,
            lighting_names=self.info.lighting_names,
        )

    # -- checkpoints --------------------------------------------------------------------------------------
    def save(self, which: str, step: int, iter_state: Any, meta: dict) -> None:
        """Saves the state to ``checkpoints/<which>/<step>`` (training runs)."""
        if self.checkpoints is None:
            raise RuntimeError("a restored run is read-only")
        self.checkpoints.save(which, step, self.state, iter_state, meta)

    def close(self) -> None:
        """Waits for pending checkpoint writes and closes the managers; drops the evaluation loaders."""
        for loader in self._eval_loaders.values():
            getattr(loader, "close", lambda: None)()
        self._eval_loaders.clear()
        if self.checkpoints is not None:
            self.checkpoints.wait()
            self.checkpoints.close()
            self.checkpoints = None
