"""Welch and paired t statistics against scipy.stats (ttest_ind with equal_var=False, ttest_rel) and CIs
computed by hand; zero spread and n = 1."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaaf.experiments import stats

scipy_stats = pytest.importorskip("scipy.stats")


def _by_hand(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """diff, df, ci_low, ci_high straight from the textbook formulas, with scipy's t quantile."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    q = scipy_stats.t.ppf(0.975, df)
    d = a.mean() - b.mean()
    return d, df, d - q * math.sqrt(va + vb), d + q * math.sqrt(va + vb)


def test_summarize_matches_numpy():
    xs = [0.7948, 0.7945, 0.78, 0.7886]
    s = stats.summarize(xs)
    assert s.n == 4
    assert s.mean == pytest.approx(np.mean(xs), abs=1e-15)
    assert s.std == pytest.approx(np.std(xs, ddof=1), abs=1e-15)
    assert s.format() == f"{np.mean(xs):.4f} ± {np.std(xs, ddof=1):.4f} (n=4)"
    assert stats.summarize([0.5]).format() == "0.5000 (n=1)"
    assert stats.summarize([]).n == 0 and stats.summarize([]).format() == "—"


def test_welch_against_scipy_and_by_hand():
    a = [0.801, 0.812, 0.795, 0.808, 0.799]
    b = [0.781, 0.776, 0.790]
    w = stats.welch(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert w.t == pytest.approx(ref.statistic, rel=1e-10)
    assert w.p == pytest.approx(ref.pvalue, rel=1e-8)
    d, df, lo, hi = _by_hand(a, b)
    assert (w.diff, w.df, w.ci_low, w.ci_high) == pytest.approx((d, df, lo, hi), rel=1e-10)
    assert w.verdict == stats.BETTER
    assert stats.welch(b, a).verdict == stats.WORSE
    assert stats.welch(b, a).ci_high == pytest.approx(-lo, rel=1e-10)


def test_welch_no_difference_and_small_n():
    w = stats.welch([0.80, 0.82, 0.78], [0.81, 0.79, 0.80])
    assert w.ci_low < 0 < w.ci_high and w.verdict == stats.NO_DIFFERENCE
    small = stats.welch([0.8], [0.7, 0.71])
    assert small.verdict == stats.N_TOO_SMALL and small.format() == "+0.0950 (n=1, no test)"
    assert small.diff == pytest.approx(0.8 - 0.705)
    assert math.isnan(small.ci_low)
    assert stats.welch([], [0.7, 0.71]).verdict == stats.N_TOO_SMALL
    assert stats.welch([], [0.7, 0.71]).format() == stats.N_TOO_SMALL


def test_zero_spread_is_not_a_test():
    """No spread on either side: no p (not "better, p = 0"), no CI; the difference is still shown."""
    for c in (stats.welch([0.8, 0.8], [0.7, 0.7]), stats.welch([0.8, 0.8], [0.8, 0.8]),
              stats.paired([0.81, 0.82], [0.80, 0.81 + 1e-17]), stats.paired([0.8, 0.8], [0.8, 0.8])):  # fmt: skip
        assert c.verdict == stats.NO_SPREAD == "no spread: cannot test"
        assert math.isnan(c.p) and math.isnan(c.ci_low) and math.isnan(c.d) and not c.testable
    assert stats.welch([0.8, 0.8], [0.7, 0.7]).diff == pytest.approx(0.1)
    assert stats.welch([0.8, 0.8], [0.7, 0.7]).format() == "+0.1000 (no spread)"


def test_paired_against_scipy_and_by_hand():
    a = [0.801, 0.812, 0.795, 0.808, 0.799]
    b = [0.790, 0.806, 0.781, 0.801, 0.795]
    c = stats.paired(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    assert c.test == stats.PAIRED and c.n_a == c.n_b == 5 and c.df == 4
    assert c.t == pytest.approx(ref.statistic, rel=1e-10)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-8)
    diffs = np.subtract(a, b)
    se = diffs.std(ddof=1) / math.sqrt(5)
    q = scipy_stats.t.ppf(0.975, 4)
    assert (c.diff, c.ci_low, c.ci_high) == pytest.approx((diffs.mean(), diffs.mean() - q * se, diffs.mean() + q * se),
                                                          rel=1e-10)  # fmt: skip
    assert c.d == pytest.approx(diffs.mean() / diffs.std(ddof=1), rel=1e-12)  # Cohen's d_z
    assert c.verdict == stats.BETTER  # p < 0.05 and the CI excludes 0
    # the same numbers as independent samples: Welch cannot see the shared seed effect
    assert stats.welch(a, b).p > c.p
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired(a, b[:3])


def test_cohens_d_of_welch_uses_the_pooled_sd():
    a, b = [0.801, 0.812, 0.795, 0.808, 0.799], [0.781, 0.776, 0.790]
    pooled = math.sqrt((4 * np.var(a, ddof=1) + 2 * np.var(b, ddof=1)) / 6)
    assert stats.welch(a, b).d == pytest.approx((np.mean(a) - np.mean(b)) / pooled, rel=1e-12)


def test_n_one_shows_the_difference_without_a_test():
    one = stats.welch([0.8123], [0.80, 0.80])
    assert one.verdict == stats.N_TOO_SMALL and one.format() == "+0.0123 (n=1, no test)"
    pair = stats.paired([0.8123], [0.80])
    assert pair.verdict == stats.N_TOO_SMALL and pair.format() == "+0.0123 (n=1, no test)" and math.isnan(pair.p)


@pytest.mark.parametrize("p", [0.001, 0.2, 0.5, 0.8, 0.975, 1 - 1e-9])
def test_norm_ppf_matches_scipy(p):
    assert stats.norm_ppf(p) == pytest.approx(scipy_stats.norm.ppf(p), rel=1e-12, abs=1e-14)


def test_confidence_must_be_a_probability():
    with pytest.raises(ValueError, match="confidence"):
        stats.welch([1, 2], [1, 2], confidence=95)


@pytest.mark.parametrize("df", [0.7, 1.0, 1.5, 2.0, 3.3, 5.0, 9.9, 30.0, 250.0, 1e5])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.975, 0.995, 0.0005, 0.025])
def test_own_t_quantile_matches_scipy(p, df):
    assert stats._t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-12)


@given(x=st.floats(-50, 50), df=st.floats(0.5, 500))
@settings(max_examples=200, deadline=None)
def test_own_t_cdf_matches_scipy(x, df):
    assert stats._t_cdf(x, df) == pytest.approx(scipy_stats.t.cdf(x, df), rel=1e-9, abs=1e-13)


def test_fallback_without_scipy(monkeypatch):
    """With scipy hidden the module's own quantile gives the same CI."""
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("hidden for this test")
        return real_import(name, *args, **kwargs)

    a, b = [0.801, 0.812, 0.795], [0.781, 0.776, 0.790, 0.785]
    with_scipy = stats.welch(a, b)
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    without = stats.welch(a, b)
    assert (without.ci_low, without.ci_high, without.p) == pytest.approx(
        (with_scipy.ci_low, with_scipy.ci_high, with_scipy.p), rel=1e-9
    )
