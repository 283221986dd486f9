"""Statistics for studies: mean ± std over seeds and Welch's two-sample comparison.

Every comparison in a report is "run A minus baseline B" on final test accuracy, with per-seed
results a_1..a_n and b_1..b_m treated as independent samples with possibly different variances.

Welch's t (unequal variances)::

    d   = mean(a) − mean(b)
    se  = sqrt(s_a²/n + s_b²/m)                     s² with ddof = 1
    t   = d / se
    ν   = se⁴ / ((s_a²/n)²/(n − 1) + (s_b²/m)²/(m − 1))      (Welch–Satterthwaite)
    95% CI = d ± t_{0.975, ν} · se
    p   = 2 · (1 − F_ν(|t|))

`scipy.stats.t` gives the quantile when SciPy is installed (it is only a dev dependency); otherwise
our own Student-t CDF (a regularized incomplete beta, by Lentz's continued fraction) inverted by
bisection, which agrees with SciPy to ~1e-10.
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
class Welch:
    """Result of `welch(a, b)`: difference of means a − b, its 95% CI, t, df, p and a verdict."""

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

    def format(self, digits: int = 4) -> str:
        """`+0.0123 [−0.0040, +0.0286]`, or `n too small`."""
        if self.verdict == N_TOO_SMALL:
            return N_TOO_SMALL if math.isnan(self.diff) else f"{self.diff:+.{digits}f} (no CI)"
        return f"{self.diff:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]"


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Welch:
    """Welch's unequal-variance comparison of mean(a) − mean(b) (formulas in the module docstring).

    With fewer than two values on either side there is no variance estimate: the verdict is
    "n too small" (the difference is still given when both sides have a value). When both samples
    have zero variance the CI collapses to the difference itself and df falls back to n + m − 2.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    sa, sb = summarize(a), summarize(b)
    nan = math.nan
    if sa.n < 2 or sb.n < 2:
        diff = sa.mean - sb.mean if sa.n and sb.n else nan
        return Welch(sa.n, sb.n, diff, nan, nan, nan, nan, nan, nan, N_TOO_SMALL)
    diff = sa.mean - sb.mean
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n  # squared standard errors of each mean
    se = math.sqrt(va + vb)
    if se == 0.0:
        # identical seeds on both sides: no spread at all, any difference is exact
        df = float(sa.n + sb.n - 2)
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
        return Welch(sa.n, sb.n, diff, 0.0, t, df, diff, diff, p, _verdict(diff, diff))
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    t = diff / se
    q = t_quantile(0.5 + confidence / 2.0, df)
    lo, hi = diff - q * se, diff + q * se
    p = 2.0 * t_sf(abs(t), df)
    return Welch(sa.n, sb.n, diff, se, t, df, lo, hi, p, _verdict(lo, hi))


def _verdict(ci_low: float, ci_high: float) -> str:
    """The CI excludes 0 on the positive side → better; on the negative side → worse."""
    if ci_low > 0:
        return BETTER
    if ci_high < 0:
        return WORSE
    return NO_DIFFERENCE


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
