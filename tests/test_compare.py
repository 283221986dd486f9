"""compare.py: paired vs Welch by seed partners, Holm's adjustment against a hand computation, and
the seeds for 80% power against the exact noncentral-t answer (scipy.stats.nct); target.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gaaf.experiments import compare, stats, target

scipy_stats = pytest.importorskip("scipy.stats")


def test_paired_when_every_seed_has_its_partner_else_welch():
    base = {0: 0.80, 1: 0.81, 2: 0.805, 3: 0.79}
    run = {0: 0.81, 1: 0.825, 2: 0.81}  # seeds 0..2 all finished in the baseline: paired on them
    c = compare.compare(run, base)
    assert c.test == stats.PAIRED and c.n_a == 3
    ref = scipy_stats.ttest_rel([0.81, 0.825, 0.81], [0.80, 0.81, 0.805])
    assert c.p == pytest.approx(ref.pvalue, rel=1e-8)
    lonely = {**run, 7: 0.82}  # seed 7 has no baseline partner: Welch on everything
    w = compare.compare(lonely, base)
    assert w.test == stats.WELCH and (w.n_a, w.n_b) == (4, 4)
    assert w.p == pytest.approx(scipy_stats.ttest_ind(list(lonely.values()), list(base.values()),
                                                      equal_var=False).pvalue, rel=1e-8)  # fmt: skip
    assert compare.compare({}, base).verdict == stats.N_TOO_SMALL


def test_holm_against_a_hand_computation():
    ps = [0.01, 0.04, 0.03, 0.005, math.nan]
    # sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04 → monotone: 0.06); k = 4
    adjusted = compare.holm(ps)
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert math.isnan(adjusted[4])
    assert compare.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert compare.holm([0.02]) == [0.02] and compare.holm([]) == []


def test_adjust_takes_the_verdict_from_the_adjusted_p():
    # three comparisons each "better" at p < 0.05 alone; after Holm only the strongest stays
    a = [0.80, 0.82, 0.81, 0.805, 0.815]
    cs = [stats.paired([x + 0.010 for x in a], [x + dx for x, dx in zip(a, (0, 0.006, -0.004, 0.002, 0.0))]),
          stats.paired([x + 0.004 for x in a], [x + dx for x, dx in zip(a, (0, 0.002, -0.002, 0.001, 0.0))]),
          stats.paired([x + 0.003 for x in a], [x + dx for x, dx in zip(a, (0, 0.002, -0.002, 0.001, 0.0))]),
          None, stats.welch([0.8], [0.7, 0.71])]  # fmt: skip
    assert all(c.p < 0.05 for c in cs[:3])
    out = compare.adjust(cs)
    expected = compare.holm([c.p for c in cs[:3]])
    assert [c.p_adj for c in out[:3]] == pytest.approx(expected)
    for c in out[:3]:
        assert c.verdict == (stats.BETTER if c.p_adj < 0.05 else stats.NO_DIFFERENCE)
    assert out[3] is None and out[4].verdict == stats.N_TOO_SMALL and math.isnan(out[4].p_adj)
    assert [c.p for c in out[:3]] == [c.p for c in cs[:3]]  # the unadjusted p is kept


def _exact_power(n: int, d: float, paired: bool) -> float:
    """Power of the two-sided t test at α = 0.05 with effect size d = Δ/sd, from the noncentral t."""
    df, nc = (n - 1, d * math.sqrt(n)) if paired else (2 * n - 2, d / math.sqrt(2 / n))
    crit = scipy_stats.t.ppf(0.975, df)
    return scipy_stats.nct.sf(crit, df, nc) + scipy_stats.nct.cdf(-crit, df, nc)


@pytest.mark.parametrize("paired", [True, False])
def test_seeds_for_power_within_one_of_the_exact_answer(paired):
    for d in [0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 2.1, 3.0]:
        n = compare.seeds_for_power(1.0, d, paired)
        exact = next(k for k in range(2, 5000) if _exact_power(k, d, paired) >= 0.8)
        assert abs(n - exact) <= 1, (d, n, exact)
    assert compare.seeds_for_power(0.004, 0.004, True) == 10  # d = 1: the textbook paired answer
    # by hand, the normal approximation n = (z_0.975 + z_0.8)² · (sd/Δ)²: 7.85 → 8 at d = 1, two short of
    # the t-corrected 10 (few degrees of freedom); at d = 0.1, 784.9 → 785, and the t correction adds ~2
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    assert math.ceil(z**2) == 8 and math.ceil(z**2 * 100) == 785
    assert 785 <= compare.seeds_for_power(1.0, 0.1, True) <= 788
    assert compare.seeds_for_power(0.0, 0.005, True) is None and compare.seeds_for_power(math.nan, 0.005, False) is None
    with pytest.raises(ValueError, match="delta"):
        compare.seeds_for_power(1.0, 0.0, True)


def test_time_to_target_first_epoch_and_never():
    metrics = {0: [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.7}, {"epoch": 3, "test_acc": 0.69}],
               1: [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.6}, {"epoch": 3, "test_acc": 0.65}]}
    t = target.time_to_target(0.7, 3, metrics)
    assert t.by_seed == {0: 2, 1: None} and t.reached == 1
    assert t.censored() == {0: 2.0, 1: 4.0} and t.mean() == 3.0
    assert t.format() == "≥ 3.00 (1 of 2 reached; never = 4)"
    assert target.time_to_target(0.5, 3, metrics).format() == "1.00 (2 of 2 reached)"
    assert target.run_epochs({"epochs": 5}, metrics) == 5 and target.run_epochs({}, metrics) == 3
    assert np.isnan(target.time_to_target(0.5, 3, {}).mean())
