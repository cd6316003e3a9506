"""What a run tells the user: ``metrics.jsonl``, TensorBoard event files and a tqdm progress bar.

Only JAX process 0 writes. Each ``metrics.jsonl`` line is ``{"step": int, "split": "train"|<eval split>,
"time": unix seconds, <name>: number, ...}``; the same scalars go to TensorBoard under
``<split>/<name>``, figures under ``<split>/<figure name>``.

A remote workdir (``gs://``): GCS objects cannot be appended to, and tensorboardX writes ``gs://`` only
with extra packages, so both files are written in a local stage (``fer_jax.paths.LocalStage``) and copied
to the workdir after every evaluation, at most a minute apart otherwise, and at ``close()``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import numpy as np
from tensorboardX import SummaryWriter

from fer_jax.paths import LocalStage, as_path

SYNC_EVERY_S = 60.0  # a remote workdir's staged logs are copied at least this often while training


def _jsonable(v):
    if isinstance(v, np.generic | np.ndarray) or hasattr(v, "dtype"):
        v = np.asarray(v).tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e309 if v > 0 else -1e309)
    return v


class MetricWriter:
    """Appends scalars to ``<workdir>/metrics.jsonl`` and TensorBoard files under ``<workdir>/tb``."""

    def __init__(self, workdir: str | Path, *, tensorboard: bool = True):
        self.workdir = as_path(workdir)
        self.active = jax.process_index() == 0
        self._tb = None
        self._stage = None
        self._synced = time.monotonic()
        if self.active:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._stage = LocalStage(self.workdir, "logs")  # the workdir itself when local
            self._stage.pull("metrics.jsonl")  # a resumed remote run appends to its rows
            self._file = open(self._stage.local / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
            if tensorboard:
                self._tb = SummaryWriter(str(self._stage.local / "tb"))

    def scalars(self, step: int, split: str, values: dict) -> None:
        if not self.active:
            return
        row = {"step": int(step), "split": split, "time": time.time()}
        row.update({k: _jsonable(v) for k, v in values.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, int | float | np.number) or (hasattr(v, "ndim") and np.ndim(v) == 0):
                    self._tb.add_scalar(f"{split}/{k}", float(v), int(step))
        if split != "train" or time.monotonic() - self._synced >= SYNC_EVERY_S:
            self.sync()

    def sync(self) -> None:
        """Copies a remote workdir's staged ``metrics.jsonl`` and ``tb/`` to it (nothing for a local one)."""
        if self._stage is None or not self._stage.staged:
            return
        if self._tb is not None:
            self._tb.flush()
        self._stage.sync()
        self._synced = time.monotonic()

    def figure(self, step: int, tag: str, fig) -> None:
        if self.active and self._tb is not None:
            self._tb.add_figure(tag, fig, int(step), close=False)

    def close(self) -> None:
        if self.active:
            self._file.close()
            if self._tb is not None:
                self._tb.close()
            if self._stage is not None:
                self._stage.close()  # copies a remote workdir's files a last time, drops the local stage


def read_metrics(workdir: str | Path) -> list[dict]:
    """All rows of ``metrics.jsonl`` (empty when absent)."""
    path = as_path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(workdir: str | Path, after_step: int) -> None:
    """Drops rows logged after ``after_step`` (a resumed run re-does those steps, and logs them again)."""
    path = as_path(workdir) / "metrics.jsonl"
    if jax.process_index() != 0 or not path.exists():
        return
    rows = [r for r in read_metrics(workdir) if r["step"] <= after_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class Progress:
    """tqdm bar over steps with loss, lr, clips/s (ETA from tqdm); silent on processes other than 0."""

    def __init__(self, total: int, initial: int, batch_size: int, *, enabled: bool = True):
        self.batch_size = batch_size
        self.bar = None
        self._t, self._step = time.perf_counter(), initial
        if enabled and jax.process_index() == 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0)

    def update(self, step: int, loss: float, lr: float) -> float:
        """Advances to ``step``; returns clips/s since the last call."""
        now = time.perf_counter()
        clips_per_s = (step - self._step) * self.batch_size / max(now - self._t, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss:.4f}", lr=f"{lr:.2e}", clips_s=f"{clips_per_s:.3g}", refresh=False
            )
            self.bar.update(step - self._step)
        self._t, self._step = now, step
        return clips_per_s

    def write(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg)
        elif jax.process_index() == 0:
            print(msg, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
