"""Timing for noisy machines: warm up, then ALTERNATE the candidates within each round, report medians.

A shared machine's speed drifts (other jobs, turbo, thermal); timing candidate A for a minute and
then B for a minute folds that drift into A − B. Interleaving them round by round, in a rotated
order, gives each candidate the same mix of fast and slow moments, and the median of the per-round
samples ignores the rounds that a burst of other work spoiled.

    timings = alternate({"relu": step_relu, "gaaf_relu": step_gaaf}, repeats=15, warmup=3, sync=sync)
    timings["gaaf_relu"].median          # seconds per call

`sync` (e.g. ``torch.cuda.synchronize``) is called before the clock starts and before it stops,
so asynchronous device work is inside the measured interval.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

Sync = "Callable[[], None] | None"


@dataclass(frozen=True)
class Timing:
    """Per-call seconds of one candidate: every sample (one per round) and their summary."""

    name: str
    samples: tuple[float, ...] = field(repr=False)
    first_call: float = math.nan  # seconds of the very first call (includes compilation, caching)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def iqr(self) -> float:
        """Interquartile range (q3 − q1) of the samples; 0 for fewer than two samples."""
        q1, q3 = quartiles(self.samples)
        return q3 - q1

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "name": self.name, "median_s": self.median, "best_s": self.best, "iqr_s": self.iqr,
            "rounds": len(self.samples), "first_call_s": self.first_call,
        }


def quartiles(values: Sequence[float]) -> "tuple[float, float]":
    """(q1, q3) of `values` (inclusive method); both the value itself for a single value."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def time_once(fn: Callable[[], object], sync: Sync = None, number: int = 1) -> float:
    """Seconds per call of `number` back-to-back calls of `fn`."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    if sync is not None:
        sync()
    return (time.perf_counter() - start) / number


def calls_per_sample(fn: Callable[[], object], min_sample_s: float, sync: Sync = None, cap: int = 1000) -> int:
    """How many back-to-back calls make one sample last at least `min_sample_s` (≥ 1), so that
    very short calls are not lost in the clock's resolution and the loop's overhead."""
    if min_sample_s <= 0:
        return 1
    per_call = max(time_once(fn, sync), 1e-9)
    return int(min(cap, max(1, math.ceil(min_sample_s / per_call))))


def alternate(
    candidates: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 3,
    sync: Sync = None,
    min_sample_s: float = 0.0,
    progress: "Callable[[int, int], None] | None" = None,
) -> dict[str, Timing]:
    """Time every candidate `repeats` times, interleaved: round r runs them all, in an order
    rotated by r. Each candidate first runs `warmup` times untimed (after one timed first call).

    Returns {name: Timing} in the candidates' order. `progress(round, repeats)` is called after each round.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(candidates)
    if not names:
        return {}
    first: dict[str, float] = {}
    for name in names:  # first call alone: compilation and allocator warm-up show up here
        first[name] = time_once(candidates[name], sync)
        for _ in range(warmup):
            candidates[name]()
    number = {name: calls_per_sample(candidates[name], min_sample_s, sync) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in rotated(names, r):
            samples[name].append(time_once(candidates[name], sync, number[name]))
        if progress is not None:
            progress(r + 1, repeats)
    return {name: Timing(name, tuple(samples[name]), first[name]) for name in names}


def rotated(items: Sequence[str], r: int) -> list[str]:
    """`items` rotated left by r (mod len): round r starts with a different candidate."""
    if not items:
        return []
    k = r % len(items)
    return [*items[k:], *items[:k]]


def format_seconds(seconds: float) -> str:
    """`812 µs`, `12.3 ms`, `1.25 s` — three significant figures in a readable unit."""
    if not math.isfinite(seconds):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


__all__ = ["Timing", "alternate", "calls_per_sample", "format_seconds", "quartiles", "rotated", "time_once"]
