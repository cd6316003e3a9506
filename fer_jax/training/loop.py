"""The training loop: ``train(config, workdir)`` — one function for every model in the registry.

Public signature (pinned; notebooks and the demo call it)::

    train(config, workdir, *, data=None, stop_at_step=None, progress=True) -> dict

A short loop over a :class:`fer_jax.training.run.Run`, which owns the config, the dataset facts, the
model and state, the mesh and the checkpoints. Running it again on the same ``workdir`` resumes from the
newest checkpoint exactly (parameters, optimizer, EMA, BatchNorm statistics, dropout RNG, early-stopping
state, data-iterator position). Workdir layout: ``config.json`` (resolved config), ``manifest.json`` (the
shards' manifest), ``metrics.jsonl``, ``tb/`` (TensorBoard), ``checkpoints/{latest,best}/<step>/``,
``figures/{confusion,curves}.png``, ``eval_<split>.json`` (the latest evaluation), ``profile/`` (with
``train.profile_steps``); see docs/training.md. Each logged train row carries ``step_time_s`` and
``data_wait_s`` (seconds per step over the logging interval; ``fer_jax.training.prefetch``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from fer_jax.losses import loss_from_config
from fer_jax.training import figures as fig_lib
from fer_jax.training import logging as log_lib
from fer_jax.training import profiling
from fer_jax.training import state as state_lib
from fer_jax.training import stop as stop_lib
from fer_jax.training.data import DataSource
from fer_jax.training.early_stopping import EarlyStopping
from fer_jax.training.prefetch import DevicePrefetch
from fer_jax.training.run import Run


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the run stopped without saving (the last good checkpoint stays)."""

    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite loss ({value}) at step {step}; stopped, last good checkpoint kept")
        self.step = step


def _write_eval(run: Run, writer: log_lib.MetricWriter, step: int, split: str, m: dict) -> None:
    """Logs one evaluation: scalars, ``eval_<split>.json``, the confusion matrix and the curves."""
    scalars = {"war": m["war"], "uar": m["uar"], "macro_f1": m["macro_f1"]}
    scalars.update({f"recall/{k}": v for k, v in m["per_class"].items() if v is not None})
    scalars.update({f"lighting/{k}": v for k, v in (m.get("per_lighting") or {}).items()})
    writer.scalars(step, split, scalars)
    if jax.process_index() == 0:
        workdir = run.workdir
        (workdir / f"eval_{split}.json").write_text(json.dumps({"step": step, **m}, indent=2) + "\n")
        cm_fig = fig_lib.confusion_figure(
            np.asarray(m["confusion"]), run.class_names, f"{split}, step {step}"
        )
        writer.figure(step, f"{split}/confusion_matrix", cm_fig)
        fig_lib.save(cm_fig, workdir / "figures" / "confusion.png")
        curves = fig_lib.curves_figure(log_lib.read_metrics(workdir), split)
        writer.figure(step, "train/curves", curves)
        fig_lib.save(curves, workdir / "figures" / "curves.png")


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
    run = Run.create(config, workdir, data=data)
    try:
        return _loop(run, stop_at_step=stop_at_step, progress=progress)
    finally:
        run.close()  # also when the data or the first step fails: pending checkpoint writes finish


def _loop(run: Run, *, stop_at_step: int | None, progress: bool) -> dict[str, Any]:
    """The steps, evaluations and checkpoints of :func:`train` over an open Run."""
    config, lengths, total = run.config, run.lengths, run.lengths["total_steps"]
    # batches reach the device two steps ahead; its get_state() is the position of the consumed ones
    train_iter = DevicePrefetch(
        run.train_iterator(), run.device_batch, int(config.train.get("prefetch_batches", 2))
    )
    stopper = EarlyStopping(patience=int(config.train.early_stopping_patience))
    start, last_eval = run.step, None
    if run.resumed is not None:
        iter_state, meta = run.resumed
        train_iter.set_state(iter_state)
        stopper = EarlyStopping.from_dict(meta["early_stopping"])
        last_eval = meta.get("last_eval")
        log_lib.truncate_metrics(run.workdir, start)
        if meta.get("status") == "early_stopped" or start >= total:
            return _summary(meta["status"], start, stopper, last_eval)
    train_step = run.make_train_step(
        loss_from_config(config, run.info.class_counts_of(config.data.train_split))
    )

    writer = log_lib.MetricWriter(run.workdir)
    bar = log_lib.Progress(total, start, int(config.train.batch_size), enabled=progress)
    if start == 0:
        bar.write(
            f"training {config.model.name}: {state_lib.num_params(run.state['params']):,} parameters, "
            f"{total} steps ({lengths['steps_per_epoch']} per epoch), {jax.device_count()} "
            f"{jax.default_backend()} device(s) ({jax.devices()[0].device_kind}), "
            f"{jax.process_count()} process(es)"
        )
    else:
        for note in run.notes:  # unreadable newer checkpoints the resume skipped (renamed, not deleted)
            bar.write(note)
        bar.write(f"resuming {config.model.name} from step {start} of {total}")
    saved = {"latest": (start, "resumed") if run.resumed is not None else None, "best": None}

    def save(which: str, step: int, status: str) -> None:
        if saved[which] is not None and saved[which][0] == step and status in (saved[which][1], "running"):
            return  # this exact step is on disk already
        meta = {"early_stopping": stopper.to_dict(), "status": status, "last_eval": last_eval, "step": step}
        run.save(which, step, train_iter.get_state(), meta)
        saved[which] = (step, status)

    def check(step: int, m_dev: dict, log: dict | None) -> None:
        m = {k: float(v) for k, v in jax.device_get(m_dev).items()}
        if not math.isfinite(m["loss"]):
            raise NonFiniteLossError(step, m["loss"])
        if log is not None:
            epoch = step / lengths["steps_per_epoch"]
            writer.scalars(step, "train", {**m, **log, "epoch": epoch})

    def evaluate(step: int) -> dict:
        """One deterministic pass (``evaluate --passes N`` does the protocol), logged; saved as best on a
        UAR gain."""
        split = config.data.eval_split
        m, _ = run.evaluate(split, passes=1)
        _write_eval(run, writer, step, split, m)
        bar.write(
            f"step {step}: {split} WAR {100 * m['war']:.2f}  UAR {100 * m['uar']:.2f}  F1 {100 * m['macro_f1']:.2f}"
        )
        if stopper.update(m["uar"], step):
            save("best", step, "best")
        return m

    status, signum, step = "finished", None, start
    # (step, metrics, timings to log or None) of the step before: checked one step late so dispatch stays async
    pending = None
    timer = _IntervalTimer(train_iter)
    profiler = profiling.StepProfiler(
        profiling.parse_profile_steps(config.train.get("profile_steps", ""), start), run.workdir / "profile"
    )
    try:
        if total == 0 and run.resumed is None:
            # a zero-step run (train.num_steps = num_epochs = 0): the starting weights (a converted model,
            # model.weights=DIR) evaluated and saved as step 0, so evaluate / predict / interpret take them
            last_eval = evaluate(0)
            save("latest", 0, "finished")
        # the stop decision is agreed by all processes, so they all save the same step (the save is collective)
        agreement = stop_lib.StopAgreement(run.mesh, int(config.train.get("stop_check_every_steps", 1)))
        with stop_lib.StopSignal() as flag:
            while step < total:
                signum = agreement.check(step, flag.signum)
                if signum is not None or (stop_at_step is not None and step >= stop_at_step):
                    if pending:
                        check(*pending)
                        pending = None
                    status = "interrupted" if signum is not None else "stopped"
                    save("latest", step, status)
                    break
                profiler.before(step + 1)
                run.state, m_dev = train_step(run.state, next(train_iter))
                profiler.after(step + 1, m_dev)
                if pending:
                    check(*pending)
                step += 1
                timer.steps += 1
                log_now = step % lengths["log_every"] == 0 or step == total
                pending = (step, m_dev, None)
                if log_now:
                    m_host = jax.device_get(m_dev)  # waits for the step: the interval's time is complete
                    clips_s = bar.update(step, float(m_host["loss"]), float(m_host["lr"]))
                    pending = (step, m_dev, {"clips_per_s": clips_s, **timer.read()})
                do_eval = step % lengths["eval_every"] == 0 or step == total
                do_ckpt = step % lengths["checkpoint_every"] == 0 or step == total
                if do_eval or do_ckpt:
                    check(*pending)
                    pending = None
                if do_eval:
                    try:
                        last_eval = evaluate(step)
                    except BaseException:
                        # the steps since the last save are not lost with the evaluation that failed
                        save("latest", step, "running")
                        raise
                    if stopper.should_stop:
                        status = "early_stopped"
                        bar.write(
                            f"early stop at step {step}: no UAR gain for {stopper.patience} evaluations"
                        )
                        save("latest", step, status)
                        break
                if do_ckpt:
                    save("latest", step, "finished" if step == total else "running")
                if do_eval or do_ckpt:
                    timer.restart()  # evaluation and saving are not step time
            if pending:
                check(*pending)
    finally:
        profiler.stop()
        bar.close()
        writer.close()
    return _summary(status, int(step), stopper, last_eval, signum)


class _IntervalTimer:
    """Step time and data wait of one logging interval (wall seconds per step, averaged over the steps
    since the last log, evaluation and checkpoint time excluded). ``data_wait_s`` is the time spent
    waiting for host batches (``DevicePrefetch.wait_s``): near 0 when the input pipeline keeps up."""

    def __init__(self, prefetch: DevicePrefetch):
        self._prefetch = prefetch
        self.restart()

    def restart(self) -> None:
        self._t, self._wait, self.steps = time.perf_counter(), self._prefetch.wait_s, 0

    def read(self) -> dict[str, float]:
        n = max(self.steps, 1)
        out = {
            "step_time_s": (time.perf_counter() - self._t) / n,
            "data_wait_s": (self._prefetch.wait_s - self._wait) / n,
        }
        self.restart()
        return out


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
