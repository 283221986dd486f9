"""Welch statistics against scipy.stats (ttest_ind with equal_var=False) and a CI computed by hand."""
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
    assert small.verdict == stats.N_TOO_SMALL
    assert small.diff == pytest.approx(0.8 - 0.705)
    assert math.isnan(small.ci_low)
    assert stats.welch([], [0.7, 0.71]).verdict == stats.N_TOO_SMALL
    assert stats.welch([], [0.7, 0.71]).format() == stats.N_TOO_SMALL


def test_welch_zero_variance_is_exact():
    w = stats.welch([0.8, 0.8], [0.7, 0.7])
    assert w.ci_low == w.ci_high == pytest.approx(0.1)
    assert w.verdict == stats.BETTER
    assert stats.welch([0.8, 0.8], [0.8, 0.8]).verdict == stats.NO_DIFFERENCE


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
