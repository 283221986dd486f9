"""A study's comparisons with its baseline: which test, Holm's adjustment across them, and how many
seeds a given difference would need.

Pairing. GAAF has no parameters, so one seed gives every arm of a study the same initial weights and
the same batch order (tests/test_pairing.py). When every finished seed of a run has its partner (the
same seed finished in the baseline), `compare` tests the per-seed differences (paired t, on the
shared seeds); otherwise Welch's t on all finished seeds of both (formulas in stats.py).

Multiplicity (Holm 1979). A study compares k runs with its baseline; with k = 13 uncorrected 5% tests
give about half a false verdict per study. `holm` adjusts the k p values (those that exist: runs with
n too small or without spread are not tests) so that the chance of any false verdict stays ≤ 5%:
sort p_(1) ≤ … ≤ p_(k), then

    p_adj_(i) = min(1, max_{j ≤ i} (k − j + 1) · p_(j))

and the verdict is taken from p_adj. The confidence intervals stay the unadjusted 95% ones.

Planning. The seeds per arm that give a two-sided test at α = 0.05 a power of 0.8 against a true
difference Δ, at the observed spread sd (of the per-seed differences when paired; pooled otherwise)::

    paired:      n = ((t_{1−α/2, n−1} + t_{0.8, n−1}) · sd / Δ)²
    two-sample:  n = 2 · ((t_{1−α/2, 2n−2} + t_{0.8, 2n−2}) · sd / Δ)²     (per arm)

the least whole n ≥ 2 that satisfies it (the right-hand side falls as n grows; searched upward from
the normal approximation, z quantiles in place of t). This is the usual t-corrected approximation to
the exact noncentral-t answer; tests/test_compare.py checks it against that exact answer
(scipy.stats.nct) for effect sizes Δ/sd from 0.1 to 3: never more than one seed off.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping, Sequence

from . import stats

#: the power and two-sided level `seeds_for_power` plans for
POWER = 0.8
ALPHA = 0.05


def compare(a: Mapping[int, float], b: Mapping[int, float]) -> stats.Comparison:
    """Run `a` minus baseline `b`, each {seed: value} of its finished seeds: paired t when every seed
    of `a` is also in `b` (on those seeds), else Welch on all values."""
    if a and set(a) <= set(b):
        seeds = sorted(a)
        return stats.paired([a[s] for s in seeds], [b[s] for s in seeds])
    return stats.welch([a[s] for s in sorted(a)], [b[s] for s in sorted(b)])


def holm(ps: Sequence[float]) -> list[float]:
    """Holm-adjusted p values, in the order given; NaN (no test) stays NaN and is not counted in k."""
    order = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
    k = len(order)
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p))
        out[i] = running
    return out


def adjust(comparisons: Sequence[stats.Comparison | None]) -> list[stats.Comparison | None]:
    """Each comparison with its Holm-adjusted p (across the testable ones) and the verdict taken from it."""
    ps = [c.p if c is not None else math.nan for c in comparisons]
    out: list[stats.Comparison | None] = []
    for c, p_adj in zip(comparisons, holm(ps)):
        if c is None or not c.testable:
            out.append(c)
        else:
            out.append(replace(c, p_adj=p_adj, verdict=stats.verdict_of(c.diff, p_adj, ALPHA)))
    return out


def seeds_for_power(sd: float, delta: float, paired: bool, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Seeds (per arm) for `power` against a true difference `delta` at spread `sd` (module docstring);
    None when sd is unknown (NaN) or zero."""
    if not (delta > 0 and math.isfinite(delta)):
        raise ValueError(f"delta must be a positive number, got {delta!r}")
    if math.isnan(sd) or sd <= 0:
        return None
    arms = 1.0 if paired else 2.0

    def needed(n: int) -> float:  # the formula's right-hand side at n seeds: falls as n grows
        df = float(n - 1 if paired else 2 * n - 2)
        return arms * ((stats.t_quantile(1.0 - alpha / 2.0, df) + stats.t_quantile(power, df)) * sd / delta) ** 2

    # the answer: the least n >= 2 with n >= needed(n); t quantiles exceed z ones, so it is at least the
    # normal approximation's n, and it is found by doubling, then bisection (n − needed(n) rises with n)
    z = stats.norm_ppf(1.0 - alpha / 2.0) + stats.norm_ppf(power)
    lo = max(2, math.ceil(arms * (z * sd / delta) ** 2))
    if lo >= needed(lo):
        return lo
    hi = 2 * lo
    while hi < needed(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: lo < needed(lo), hi >= needed(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mid >= needed(mid) else (mid, hi)
    return hi
