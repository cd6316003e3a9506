"""The run's performance hooks: a ``jax.profiler`` trace of a few early steps and JAX's persistent
compilation cache.

- ``train.profile_steps``: ``""`` (off), ``"N"`` (N steps after the first one of this process, whose
  time is mostly compilation) or ``"a,b"`` (global steps a to b, both included; step k is the k-th step
  of the run, as in ``metrics.jsonl``). The trace goes to ``<workdir>/profile/`` (open it with
  TensorBoard's profile plugin or Perfetto).
- ``train.compilation_cache_dir``: a folder for JAX's persistent compilation cache (``""``: off), so a
  reconnected Colab or a resumed run reuses the compiled steps instead of compiling them again.
"""

from __future__ import annotations

from pathlib import Path

import jax

from fer_jax.paths import LocalStage, as_path


def parse_profile_steps(spec, start: int = 0) -> tuple[int, int] | None:
    """``train.profile_steps`` -> the first and last global step to trace, or None (off).

    ``start``: the step the run (re)starts from; a count N traces steps ``start + 2 .. start + N + 1``.
    Raises ``ValueError`` (one line) on anything else than ``""``, ``"N"`` or ``"a,b"`` with 1 <= a <= b.
    """
    text = str(spec if spec is not None else "").strip()
    if text in ("", "0"):
        return None
    bad = f"config.train.profile_steps={spec!r} must be '' (off), a count 'N' or a step range 'a,b' (1 <= a <= b)"
    parts = [p.strip() for p in text.split(",")]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ValueError(bad) from None
    if len(nums) == 1 and nums[0] >= 1:
        return start + 2, start + nums[0] + 1
    if len(nums) == 2 and 1 <= nums[0] <= nums[1]:
        return nums[0], nums[1]
    raise ValueError(bad)


class StepProfiler:
    """Starts ``jax.profiler`` before the first chosen step and stops it after the last one has finished
    (``before(step)`` / ``after(step, outputs)`` around each step, ``step`` its 1-based number)."""

    def __init__(self, steps: tuple[int, int] | None, log_dir: Path):
        self.steps = steps
        self.log_dir = as_path(log_dir)
        self.active = False
        self._stage = None  # a remote log_dir: the trace is written locally and copied at stop()

    def before(self, step: int) -> None:
        if self.steps is not None and not self.active and self.steps[0] <= step <= self.steps[1]:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._stage = LocalStage(self.log_dir, "profile")
            jax.profiler.start_trace(str(self._stage.local))
            self.active = True

    def after(self, step: int, outputs) -> None:
        if self.active and step >= self.steps[1]:
            jax.block_until_ready(outputs)  # the trace holds the whole last step, not its dispatch
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
            self._stage.close()


def use_compilation_cache(config) -> str | None:
    """Turns on JAX's persistent compilation cache at ``train.compilation_cache_dir`` (created); returns the
    folder, or None when the field is empty or absent. Must run before the steps compile."""
    folder = str(config.train.get("compilation_cache_dir", "") or "")
    if not folder:
        return None
    path = as_path(folder)  # JAX's cache reads gs:// through etils.epath too
    path.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != str(path):
        from jax.experimental.compilation_cache import compilation_cache

        jax.config.update("jax_compilation_cache_dir", str(path))
        compilation_cache.reset_cache()  # a cache opened on another folder in this process is re-opened here
    return str(path)
