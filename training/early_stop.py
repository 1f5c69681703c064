"""An optional early end of stage 2: stop once the identity similarity has stopped rising.

The rule (off by default: the paper trains 400 iterations, and nothing here shows that fewer give the same
identity; turn it on with ``early_stop`` on the node; the engine trains the full count):

- the *smoothed similarity* after iteration i is the mean face similarity of the trained frames of the last
  :data:`WINDOW` (40) iterations, iterations without a face left out (none is computed before 40 iterations);
- a *rise* is a smoothed similarity more than :data:`MIN_RISE` (0.005) above the best one so far, which it
  then becomes;
- stage 2 stops after iteration i when :data:`PATIENCE` (60) iterations have passed since the last rise (or
  since the first smoothed value, when none rose), and never before :data:`MIN_ITERATIONS` (150) iterations.

The stop point is kept in the adapter's metadata (``training.early_stop``: the rule and ``stopped_at``, the
number of iterations trained) and drawn on the face-similarity curve, with the smoothed similarity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

WINDOW = 40
PATIENCE = 60
MIN_RISE = 0.005
MIN_ITERATIONS = 150


@dataclass
class EarlyStop:
    window: int = WINDOW
    patience: int = PATIENCE
    min_rise: float = MIN_RISE
    min_iterations: int = MIN_ITERATIONS
    smoothed: list = field(default_factory=list)    # per iteration (NaN before the window is full)
    best: float = -math.inf
    last_rise: int = -1                             # iteration of the last rise (or of the first smoothed value)
    stopped_at: int | None = None                   # iterations trained when it stopped

    def rule(self) -> dict:
        return {"window": self.window, "patience": self.patience, "min_rise": self.min_rise,
                "min_iterations": self.min_iterations}

    def update(self, similarities: list) -> bool:
        """After each iteration, with the similarities so far (NaN: no face): whether to stop now."""
        i = len(similarities) - 1
        recent = [v for v in similarities[-self.window:] if v is not None and math.isfinite(v)]
        value = sum(recent) / len(recent) if len(similarities) >= self.window and recent else math.nan
        self.smoothed.append(value)
        if math.isfinite(value):
            if self.last_rise < 0 or value > self.best + self.min_rise:
                self.best, self.last_rise = max(value, self.best), i
        stop = (self.last_rise >= 0 and i + 1 >= self.min_iterations and i - self.last_rise >= self.patience)
        if stop:
            self.stopped_at = i + 1
        return stop

    def replay(self, similarities: list) -> None:
        """The state after ``similarities`` (a resumed run), without deciding anything."""
        for n in range(1, len(similarities) + 1):
            self.update(similarities[:n])
        self.stopped_at = None

    def to_json(self) -> dict:
        return {**self.rule(), "stopped_at": self.stopped_at}


def rule_text() -> str:
    return (f"stop when the mean similarity of the last {WINDOW} iterations has not risen by more than {MIN_RISE} "
            f"for {PATIENCE} iterations, never before {MIN_ITERATIONS}")

