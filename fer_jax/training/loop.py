"""The training loop: ``train(config, workdir)`` — one function for every model in the registry.

Public signature (pinned; notebooks and the demo call it)::

    train(config, workdir, *, data=None, stop_at_step=None, progress=True) -> dict

Running it again on the same ``workdir`` resumes from the newest checkpoint exactly (parameters,
optimizer, EMA, BatchNorm statistics, dropout RNG, early-stopping state, data-iterator position).
Workdir layout: ``config.json`` (resolved config), ``manifest.json`` (the shards' manifest),
``metrics.jsonl``, ``tb/`` (TensorBoard), ``checkpoints/{latest,best}/<step>/``,
``figures/{confusion,curves}.png``, ``eval_<split>.json`` (the latest evaluation); see docs/training.md.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from fer_jax.models import registry
from fer_jax.training import checkpoint as ckpt_lib
from fer_jax.training import evaluation, optim, steps
from fer_jax.training import figures as fig_lib
from fer_jax.training import logging as log_lib
from fer_jax.training import mesh as mesh_lib
from fer_jax.training import state as state_lib
from fer_jax.training.data import DataSource, PipelineData
from fer_jax.training.early_stopping import EarlyStopping


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the run stopped without saving (the last good checkpoint stays)."""

    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite loss ({value}) at step {step}; stopped, last good checkpoint kept")
        self.step = step


class _StopFlag:
    """SIGINT / SIGTERM set a flag; the loop saves a checkpoint at the next step boundary and returns."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def write_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote to ``<workdir>/config.json``."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a training workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def make_loss_fn(config, class_counts):
    """``fer_jax.losses.loss_from_config`` (focal / weighted CE of paper 1)."""
    from fer_jax.losses import loss_from_config

    return loss_from_config(config, class_counts)


def run_lengths(config, num_train: int) -> dict[str, int]:
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
    config, mesh, *, total_updates: int, updates_per_epoch: int, abstract: bool = False
):
    """Model -> (defs, replicated state, tx, schedule). Same seed -> same state on every process.

    ``abstract=True`` returns the state as ``jax.ShapeDtypeStruct`` leaves (replicated shardings) without
    running any initializer: the restore target of evaluation, which skips the 8-15 s of eager
    initialisation (one tiny XLA compilation per initializer) a CPU process would otherwise pay.
    """
    held = {}

    def make():
        model = registry.build(config, rngs=nnx.Rngs(config.seed, dropout=config.seed + 1))
        _, params, _ = nnx.split(model, nnx.Param, ...)
        held["tx"], held["schedule"] = optim.make_optimizer(
            config, params, total_steps=total_updates, steps_per_epoch=updates_per_epoch
        )
        held["defs"], state = state_lib.create_state(model, held["tx"], ema=float(config.train.ema_decay) > 0)
        return state

    if abstract:
        sharding = mesh_lib.replicated(mesh)
        state = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), jax.eval_shape(make)
        )
        return held["defs"], state, held["tx"], held["schedule"]
    state = make()
    return held["defs"], mesh_lib.put_replicated(state, mesh), held["tx"], held["schedule"]


def train(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    data: DataSource | None = None,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its newest checkpoint) and returns a summary.

    Args:
      config: a training config (``configs/*.py``'s ``get_config()``, overrides applied).
      workdir: run directory (created).
      data: where batches come from; default ``PipelineData()`` (the shards in ``config.data.dir``).
      stop_at_step: save a checkpoint and return once this global step is reached (a pre-emption
        rehearsal; the schedule still spans the whole run).
      progress: show the tqdm bar.

    Returns ``{"status": "finished"|"early_stopped"|"interrupted"|"stopped", "step", "best_uar",
    "best_step", "last_eval", "signal"}`` (``signal``: the signal number after SIGINT / SIGTERM).
    Raises ``NonFiniteLossError`` on a NaN/Inf loss and ``ValueError`` on an inconsistent config.
    """
    mesh_lib.maybe_initialize_distributed()
    workdir = Path(workdir).absolute()
    data = data or PipelineData()
    write_config(config, workdir)
    mesh = mesh_lib.make_mesh()
    mesh_lib.check_batch_size(int(config.train.batch_size), mesh)
    mesh_lib.check_batch_size(int(config.eval.batch_size), mesh)
    pidx, pcount = jax.process_index(), jax.process_count()

    manifest = data.manifest(config)
    if pidx == 0:  # predict needs class names and preprocessing settings even when the shards are gone
        (workdir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    class_names = list(manifest.get("class_names") or [str(i) for i in range(config.model.num_classes)])
    lighting_names = manifest.get("lighting_names")
    class_counts = (manifest.get("class_counts") or {}).get(config.data.train_split)
    lengths = run_lengths(config, data.num_examples(config, config.data.train_split))
    total = lengths["total_steps"]

    defs, state, tx, schedule = build_model_and_state(
        config,
        mesh,
        total_updates=lengths["optimizer_steps"],
        updates_per_epoch=lengths["optimizer_steps_per_epoch"],
    )
    input_names = list(registry.input_spec(config))
    loss_fn = make_loss_fn(config, class_counts)
    train_step = steps.jit_train_step(
        steps.make_train_step(
            defs,
            tx,
            schedule,
            loss_fn,
            input_names,
            ema_decay=float(config.train.ema_decay),
            grad_accum_steps=int(config.train.grad_accum_steps),
        ),
        mesh,
    )
    eval_step = steps.jit_eval_step(steps.make_eval_step(defs, input_names), mesh)

    ckpts = ckpt_lib.RunCheckpoints(workdir, keep=int(config.train.keep_checkpoints))
    train_iter = data.train_iterator(config, process_index=pidx, process_count=pcount)
    stopper = EarlyStopping(patience=int(config.train.early_stopping_patience))
    start = 0
    last_eval: dict | None = None
    latest = ckpts.latest_step()
    if latest is not None:
        state, iter_state, meta = ckpts.restore("latest", latest, state)
        train_iter.set_state(iter_state)
        stopper = EarlyStopping.from_dict(meta["early_stopping"])
        start = int(latest)
        last_eval = meta.get("last_eval")
        log_lib.truncate_metrics(workdir, start)
        if meta.get("status") == "early_stopped" or start >= total:
            ckpts.close()
            return _summary(meta["status"], start, stopper, last_eval)

    writer = log_lib.MetricWriter(workdir)
    bar = log_lib.Progress(total, start, int(config.train.batch_size), enabled=progress)
    if start == 0:
        bar.write(
            f"training {config.model.name}: {state_lib.num_params(state['params']):,} parameters, {total} steps "
            f"({lengths['steps_per_epoch']} per epoch), {jax.device_count()} device(s), {pcount} process(es)"
        )
    else:
        bar.write(f"resuming {config.model.name} from step {start} of {total}")

    saved = {"latest": (start, "resumed") if latest is not None else None, "best": None}

    def save(which: str, step: int, status: str) -> None:
        if saved[which] is not None and saved[which][0] == step and status in (saved[which][1], "running"):
            return  # this exact step is on disk already
        meta = {"early_stopping": stopper.to_dict(), "status": status, "last_eval": last_eval, "step": step}
        ckpts.save(which, step, state, train_iter.get_state(), meta)
        saved[which] = (step, status)

    def run_eval(step: int) -> dict:
        split = config.data.eval_split

        def make_iter(pass_index: int):
            return data.eval_iterator(
                config,
                split,
                batch_size=int(config.eval.batch_size),
                process_index=pidx,
                process_count=pcount,
                seed=int(config.seed) + pass_index,
                augment=False,
            )

        m, _ = evaluation.evaluate_passes(
            make_iter,
            eval_step,
            state_lib.eval_params(state),
            state["rest"],
            passes=1,  # during training one deterministic pass; `evaluate --passes N` does the protocol
            input_names=input_names,
            mesh=mesh,
            num_classes=int(config.model.num_classes),
            class_names=class_names,
            lighting_names=lighting_names,
        )
        scalars = {"war": m["war"], "uar": m["uar"], "macro_f1": m["macro_f1"]}
        scalars.update({f"recall/{k}": v for k, v in m["per_class"].items() if v is not None})
        scalars.update({f"lighting/{k}": v for k, v in (m.get("per_lighting") or {}).items()})
        writer.scalars(step, split, scalars)
        if pidx == 0:
            (workdir / f"eval_{split}.json").write_text(json.dumps({"step": step, **m}, indent=2) + "\n")
            cm_fig = fig_lib.confusion_figure(
                np.asarray(m["confusion"]), class_names, f"{split}, step {step}"
            )
            writer.figure(step, f"{split}/confusion_matrix", cm_fig)
            fig_lib.save(cm_fig, workdir / "figures" / "confusion.png")
            curves = fig_lib.curves_figure(log_lib.read_metrics(workdir), split)
            writer.figure(step, "train/curves", curves)
            fig_lib.save(curves, workdir / "figures" / "curves.png")
        bar.write(
            f"step {step}: {split} WAR {100 * m['war']:.2f}  UAR {100 * m['uar']:.2f}  F1 {100 * m['macro_f1']:.2f}"
        )
        return m

    def check(step: int, m_dev: dict, log: bool, clips_s: float) -> None:
        m = {k: float(v) for k, v in jax.device_get(m_dev).items()}
        if not math.isfinite(m["loss"]):
            raise NonFiniteLossError(step, m["loss"])
        if log:
            writer.scalars(
                step, "train", {**m, "clips_per_s": clips_s, "epoch": step / lengths["steps_per_epoch"]}
            )

    status = "finished"
    signum = None
    pending = None  # (step, metrics) of the step before: checked one step late so dispatch stays async
    clips_s = 0.0
    try:
        with _StopFlag() as flag:
            step = start
            while step < total:
                if flag.signum is not None or (stop_at_step is not None and step >= stop_at_step):
                    if pending:
                        check(*pending, clips_s)
                        pending = None
                    status = "interrupted" if flag.signum is not None else "stopped"
                    signum = flag.signum
                    save("latest", step, status)
                    break
                batch = next(train_iter)
                state, m_dev = train_step(state, evaluation.device_batch(batch, input_names, mesh))
                if pending:
                    check(*pending, clips_s)
                step += 1
                log_now = step % lengths["log_every"] == 0 or step == total
                pending = (step, m_dev, log_now)
                if log_now:
                    m_host = jax.device_get(m_dev)
                    clips_s = bar.update(step, float(m_host["loss"]), float(m_host["lr"]))
                do_eval = step % lengths["eval_every"] == 0 or step == total
                do_ckpt = step % lengths["checkpoint_every"] == 0 or step == total
                if do_eval or do_ckpt:
                    check(*pending, clips_s)
                    pending = None
                if do_eval:
                    last_eval = run_eval(step)
                    if stopper.update(last_eval["uar"], step):
                        save("best", step, "best")
                    if stopper.should_stop:
                        status = "early_stopped"
                        bar.write(
                            f"early stop at step {step}: no UAR gain for {stopper.patience} evaluations"
                        )
                        save("latest", step, status)
                        break
                if do_ckpt:
                    save("latest", step, "finished" if step == total else "running")
            if pending:
                check(*pending, clips_s)
    finally:
        bar.close()
        writer.close()
        ckpts.wait()
        ckpts.close()
    return _summary(status, int(step), stopper, last_eval, signum)


def _summary(
    status: str, step: int, stopper: EarlyStopping, last_eval: dict | None, signum: int | None = None
) -> dict[str, Any]:
    best = stopper.best if math.isfinite(stopper.best) else None
    return {
        "status": status,
        "step": step,
        "best_uar": best,
        "best_step": stopper.best_step,
        "last_eval": last_eval,
        "signal": signum,
    }
