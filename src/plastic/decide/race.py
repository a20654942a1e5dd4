"""The trial's decisions: which candidates go on at each rung, who won, and whether the win is clear.

Design pre-registered in BENCHMARKS.md ("Pre-registered: the trial"), frozen before any trial ran:
successive halving with eta = 2 over rungs at a quarter, a half and all of the budget, never fewer
than two candidates at the last rung; the margin between two candidates is judged by a seeded bootstrap
over the validation images (paired per-image correctness), clear when the 90% interval of the accuracy
difference lies above 0. Numbers only here: no model, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ETA = 2  # successive halving keeps the better 1/ETA at each rung
RUNG_FRACTIONS = (0.25, 0.5, 1.0)  # of the full budget S
MIN_FINALISTS = 2  # never fewer than this many at the last rung: the winner has a runner-up
BOOTSTRAP_RESAMPLES = 1000
INTERVAL = 0.90  # the two-sided interval; "clear" = its lower end above 0
PASSES = 4  # the default budget: this many passes over the training part...
MIN_STEPS, MAX_STEPS = 40, 400  # ...within these bounds


def default_budget(train_images: int, batch_size: int) -> int:
    """S: four passes over the training part in steps of ``batch_size``, between 40 and 400 steps."""
    per_pass = -(-train_images // batch_size)  # ceil
    return min(MAX_STEPS, max(MIN_STEPS, PASSES * per_pass))


def rungs(budget: int) -> list[int]:
    """The step counts at which candidates are scored: S/4, S/2, S (each at least 1, increasing)."""
    out: list[int] = []
    for f in RUNG_FRACTIONS:
        steps = max(1, round(budget * f))
        if not out or steps > out[-1]:
            out.append(steps)
    return out


@dataclass(frozen=True)
class Score:
    """One candidate at one rung: validation accuracy (higher is better), ties broken by loss."""

    accuracy: float
    loss: float


def keep_count(n: int) -> int:
    """How many of ``n`` candidates go on to the next rung: the better 1/ETA, never fewer than 2."""
    return min(n, max(MIN_FINALISTS, n // ETA))


def survivors(scores: dict[int, Score], order: Sequence[int]) -> list[int]:
    """The better half of the candidates ``order`` lists (never fewer than 2), best first. Ties in
    accuracy go to the lower loss, then to the earlier candidate (a stable, seed-free order)."""
    return standing(scores, order)[: keep_count(len(order))]


def standing(scores: dict[int, Score], order: Sequence[int]) -> list[int]:
    """Candidates best first: accuracy, then lower loss, then their place in ``order``."""
    place = {c: i for i, c in enumerate(order)}
    return sorted(order, key=lambda c: (-scores[c].accuracy, scores[c].loss, place[c]))


@dataclass(frozen=True)
class Margin:
    """Accuracy of ``a`` minus that of ``b`` on the same validation images, with its bootstrap interval."""

    difference: float
    low: float
    high: float
    steps: int  # the rung both were scored at

    @property
    def clear(self) -> bool:
        return self.low > 0.0


def margin(a: Sequence[bool], b: Sequence[bool], seed: int, steps: int) -> Margin:
    """The paired bootstrap of mean(a) - mean(b) over images: ``BOOTSTRAP_RESAMPLES`` resamples of the
    image indices (seeded), the ``INTERVAL`` percentile interval of the difference."""
    if len(a) != len(b) or not a:
        raise ValueError("margin: two non-empty correctness vectors of the same images")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)  # (n,) in {-1, 0, 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(BOOTSTRAP_RESAMPLES, len(diff)))  # (R, n)
    means = diff[idx].mean(axis=1)  # (R,)
    tail = (1.0 - INTERVAL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Margin(float(diff.mean()), float(low), float(high), steps)
