"""Statistics for studies: mean ± std over seeds, and a run compared with its baseline by a paired
or Welch t test.

Every comparison in a report is "run A minus baseline B" on one number per seed (final test accuracy,
or epochs to a target). Two tests, chosen by :mod:`gaaf.experiments.compare`:

Paired t (every seed of A has its partner, the same seed, in B: same initial weights and batch order)::

    δ_i = a_i − b_i (i = 1..n)     diff = mean(δ)     sd = std(δ, ddof = 1)
    se  = sd / √n     t = diff / se     ν = n − 1     d = diff / sd   (Cohen's d_z)

Welch's t (unequal variances; any seeds)::

    diff = mean(a) − mean(b)
    se   = sqrt(s_a²/n + s_b²/m)                     s² with ddof = 1
    t    = diff / se
    ν    = se⁴ / ((s_a²/n)²/(n − 1) + (s_b²/m)²/(m − 1))      (Welch–Satterthwaite)
    d    = diff / s_pooled,   s_pooled² = ((n − 1)s_a² + (m − 1)s_b²) / (n + m − 2)   (Cohen's d)

Both: 95% CI = diff ± t_{0.975, ν} · se, p = 2 · (1 − F_ν(|t|)) (two-sided), verdict *better* /
*worse* when p < 0.05 (the CI excludes 0), else *no significant difference*; `compare.holm` later
replaces the p behind the verdict by its Holm-adjusted value. Fewer than two values (pairs) on a side:
*n too small* (the difference is still given). No spread at all (se = 0: every seed identical on both
sides, or every per-seed difference equal; a spread under 1e-12 of the values is rounding and counts
as none): *no spread: cannot test*, with p = NaN — never "p = 0".

`scipy.stats.t` gives the quantile when SciPy is installed (it is only a dev dependency); otherwise
our own Student-t CDF (a regularized incomplete beta, by Lentz's continued fraction) inverted by
bisection, which agrees with SciPy to ~1e-10. The normal quantile is our own (bisection on erfc).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

#: verdict strings, used verbatim in reports
BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no significant difference"
N_TOO_SMALL = "n too small"
NO_SPREAD = "no spread: cannot test"
#: Comparison.test
PAIRED = "paired"
WELCH = "welch"


@dataclass(frozen=True)
class Summary:
    """n, mean and sample standard deviation (ddof=1; 0.0 when n == 1, nan when n == 0)."""

    n: int
    mean: float
    std: float

    def format(self, digits: int = 4) -> str:
        """`0.7948 ± 0.0031 (n=3)`; a single value prints without ± ."""
        if self.n == 0:
            return "—"
        if self.n == 1:
            return f"{self.mean:.{digits}f} (n=1)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation of `values`."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(1, mean, 0.0)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return Summary(n, mean, math.sqrt(var))


@dataclass(frozen=True)
class Comparison:
    """A run compared with its baseline: the difference a − b, its 95% CI, t, df, the two-sided p,
    Cohen's d and a verdict. test: PAIRED or WELCH; n_a, n_b: values on each side (pairs: n_a = n_b);
    sd: the standard deviation behind d (of the differences, or pooled); p_adj: p after Holm's
    adjustment across the study's comparisons (`compare.holm`), NaN until then."""

    n_a: int
    n_b: int
    diff: float
    se: float
    t: float
    df: float
    ci_low: float
    ci_high: float
    p: float
    verdict: str
    test: str = "welch"
    d: float = math.nan
    sd: float = math.nan
    p_adj: float = math.nan

    @property
    def testable(self) -> bool:
        """True when there is a p value (not n too small, not without spread)."""
        return not math.isnan(self.p)

    def format(self, digits: int = 4) -> str:
        """`+0.0123 [−0.0040, +0.0286]`; `+0.0123 (n=1, no test)`; `+0.0000 (no spread)`; `n too small`."""
        if math.isnan(self.diff):
            return N_TOO_SMALL
        if self.verdict == N_TOO_SMALL:
            return f"{self.diff:+.{digits}f} (n={min(self.n_a, self.n_b)}, no test)"
        if self.verdict == NO_SPREAD:
            return f"{self.diff:+.{digits}f} (no spread)"
        return f"{self.diff:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]"


#: the name this class had while Welch was the only test
Welch = Comparison


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Welch's unequal-variance comparison of mean(a) − mean(b) (formulas in the module docstring)."""
    _check_confidence(confidence)
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        diff = sa.mean - sb.mean if sa.n and sb.n else math.nan
        return _untestable(WELCH, sa.n, sb.n, diff, N_TOO_SMALL)
    diff = sa.mean - sb.mean
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n  # squared standard errors of each mean
    se = math.sqrt(va + vb)
    if se <= _ROUNDING * max(map(abs, [*a, *b])):  # identical seeds on both sides: nothing to test against
        return _untestable(WELCH, sa.n, sb.n, diff, NO_SPREAD)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    pooled = math.sqrt(((sa.n - 1) * sa.std**2 + (sb.n - 1) * sb.std**2) / (sa.n + sb.n - 2))
    return _t_test(WELCH, sa.n, sb.n, diff, se, df, pooled, confidence)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Paired t on the differences a_i − b_i (a and b in the same seed order; formulas in the module
    docstring). Raises ValueError when a and b differ in length."""
    _check_confidence(confidence)
    if len(a) != len(b):
        raise ValueError(f"paired samples must have equal lengths, got {len(a)} and {len(b)}")
    s = summarize([float(x) - float(y) for x, y in zip(a, b)])
    if s.n < 2:
        return _untestable(PAIRED, s.n, s.n, s.mean, N_TOO_SMALL)
    if s.std <= _ROUNDING * max(map(abs, [*a, *b])):  # every seed moved by the same amount: no spread
        return _untestable(PAIRED, s.n, s.n, s.mean, NO_SPREAD)
    return _t_test(PAIRED, s.n, s.n, s.mean, s.std / math.sqrt(s.n), float(s.n - 1), s.std, confidence)


#: a spread below this fraction of the values' size is rounding (0.82 − 0.81 ≠ 0.81 − 0.80 in floating
#: point), not seed-to-seed variation: it counts as no spread
_ROUNDING = 1e-12


def _t_test(test: str, n_a: int, n_b: int, diff: float, se: float, df: float, sd: float,
            confidence: float) -> Comparison:
    t = diff / se
    q = t_quantile(0.5 + confidence / 2.0, df)
    p = 2.0 * t_sf(abs(t), df)
    return Comparison(n_a, n_b, diff, se, t, df, diff - q * se, diff + q * se, p, verdict_of(diff, p, 1.0 - confidence),
                      test=test, d=diff / sd, sd=sd)  # fmt: skip


def _untestable(test: str, n_a: int, n_b: int, diff: float, verdict: str) -> Comparison:
    nan = math.nan
    return Comparison(n_a, n_b, diff, nan, nan, nan, nan, nan, nan, verdict, test=test)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def verdict_of(diff: float, p: float, alpha: float = 0.05) -> str:
    """*better* / *worse* (by the sign of diff) when p < alpha, else *no significant difference*."""
    if p < alpha:
        return BETTER if diff > 0 else WORSE
    return NO_DIFFERENCE


# ---------------------------------------------------------------------------------------------
# the normal distribution


def norm_ppf(p: float) -> float:
    """The p-quantile of the standard normal: Φ(x) = ½·erfc(−x/√2) inverted by bisection (on the lower
    tail, where erfc keeps its digits; the upper by symmetry)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p > 0.5:
        return -norm_ppf(1.0 - p)
    lo, hi = -40.0, 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(hi)):
            break
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# Student's t distribution (SciPy when available, else our own)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` (possibly fractional) degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    try:
        from scipy.stats import t as student_t
    except ImportError:
        return _t_quantile(p, df)
    return float(student_t.ppf(p, df))


def t_sf(x: float, df: float) -> float:
    """P(T > x) for Student's t with `df` degrees of freedom."""
    try:
        from scipy.stats import t as student_t
    except ImportError:
        return 1.0 - _t_cdf(x, df)
    return float(student_t.sf(x, df))


def _t_cdf(x: float, df: float) -> float:
    """F_ν(x) = 1 − ½·I_{ν/(ν+x²)}(ν/2, ½) for x ≥ 0, and by symmetry for x < 0."""
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    # pass 1 − z = x²/(ν + x²) computed directly: 1 − z by subtraction loses digits near x = 0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + x * x), x * x / (df + x * x))  # P(T > |x|)
    return 1.0 - tail if x >= 0 else tail


def _t_quantile(p: float, df: float) -> float:
    """Invert `_t_cdf` by bisection on a bracket that is widened until it holds the answer."""
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:  # heavy tails at small df: the quantile can be in the hundreds
        lo, hi = hi, hi * 2.0
    for _ in range(200):  # 200 halvings: far below double precision
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """Regularized incomplete beta I_x(a, b), y = 1 − x (Numerical Recipes §6.4: continued
    fraction, using the symmetry I_x(a, b) = 1 − I_y(b, a) where the fraction converges slowly)."""
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b), evaluated by the modified Lentz method."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))  # even step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))  # odd step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h
