"""Time to target: the paper's claim is "the effect of dropout in fewer epochs", so each run is also
measured by how soon it gets there.

    target           = the baseline's mean final test accuracy (over its finished seeds)
    epochs to target = the first epoch whose test accuracy (metrics.csv) is ≥ target;
                       a run that never reaches it counts as epochs + 1 (censored: "never")

Per run: the mean epochs to target over its finished seeds and how many reached it ("2 of 3").
Against the baseline: per seed, the run's epochs to target minus the baseline's (a paired t when
every seed has its baseline partner, else Welch; `compare.compare`), Holm-adjusted across the study's
runs like the accuracy comparisons. Censoring at epochs + 1 understates how much later a run that
never gets there would be: a difference that involves "never" is a bound, and the report says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import stats


@dataclass(frozen=True)
class TimeToTarget:
    """One run's epochs to `target` per finished seed (None: never reached) and the run's epochs."""

    target: float
    epochs: int  # epochs asked for: "never" counts as epochs + 1
    by_seed: dict[int, int | None]

    def censored(self) -> dict[int, float]:
        """{seed: epochs to target, never = epochs + 1}: the values the statistics use."""
        return {s: float(e if e is not None else self.epochs + 1) for s, e in self.by_seed.items()}

    @property
    def reached(self) -> int:
        return sum(e is not None for e in self.by_seed.values())

    def mean(self) -> float:
        """Mean censored epochs to target (NaN without finished seeds)."""
        return stats.summarize(list(self.censored().values())).mean

    def format(self) -> str:
        """`2.33 (3 of 3 reached)`, `≥ 3.67 (1 of 3 reached; never = 4)`, or `—`."""
        n = len(self.by_seed)
        if n == 0:
            return "—"
        if self.reached == n:
            return f"{self.mean():.2f} ({self.reached} of {n} reached)"
        return f"≥ {self.mean():.2f} ({self.reached} of {n} reached; never = {self.epochs + 1})"


def first_epoch_at(metrics: Sequence[Mapping[str, Any]], target: float) -> int | None:
    """The first epoch whose test accuracy is ≥ target, or None (never)."""
    for row in metrics:
        acc, epoch = row.get("test_acc"), row.get("epoch")
        if isinstance(acc, (int, float)) and isinstance(epoch, (int, float)) and acc >= target:
            return int(epoch)
    return None


def time_to_target(target: float, epochs: int, metrics_by_seed: Mapping[int, Sequence[Mapping[str, Any]]]) -> TimeToTarget:
    """TimeToTarget of one run from {seed: metrics.csv rows} of its finished seeds."""
    if math.isnan(target):
        raise ValueError("target must be a number, got NaN")
    return TimeToTarget(target, epochs, {s: first_epoch_at(m, target) for s, m in sorted(metrics_by_seed.items())})


def run_epochs(config: Mapping[str, Any], metrics_by_seed: Mapping[int, Sequence[Mapping[str, Any]]]) -> int:
    """Epochs asked for (config), else the most epochs any seed recorded."""
    epochs = config.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0:
        return epochs
    return max((len(m) for m in metrics_by_seed.values()), default=0)
