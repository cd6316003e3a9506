"""Early stopping on a metric that should increase (UAR), with patience counted in evaluations."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class EarlyStopping:
    """Tracks the best value of a maximised metric; ``should_stop`` after ``patience`` evaluations
    without improvement (``patience == 0`` never stops). ``to_dict``/``from_dict`` go into checkpoints."""

    patience: int
    min_delta: float = 0.0
    best: float = -math.inf
    best_step: int = -1
    bad_evals: int = 0

    def update(self, value: float, step: int) -> bool:
        """Records one evaluation; returns True when ``value`` is a new best."""
        if math.isfinite(value) and value > self.best + self.min_delta:
            self.best, self.best_step, self.bad_evals = float(value), int(step), 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["best"] = None if not math.isfinite(self.best) else self.best  # JSON has no -inf
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EarlyStopping:
        d = dict(d)
        d["best"] = -math.inf if d.get("best") is None else float(d["best"])
        return cls(**d)
