"""The statistics in a report, as text: the comparison cells of the main table, the note under it
that says which tests were used, the time-to-target section, and the statistics fields of runs.csv.

Main table, per run: Δ vs baseline [unadjusted 95% CI] (or `+0.0123 (n=1, no test)`), verdict (from
the Holm-adjusted p), p (Holm), Cohen's d, the test (paired / welch), and with `--mde Δ` the seeds per
arm for 80% power against Δ at the row's observed spread (compare.py).
"""
from __future__ import annotations

import math
from typing import Any

from . import compare, stats
from .rows import RunRow
from .study import Study

#: columns after `verdict` in the main table (the power column only with --mde)
STATS_COLUMNS = ("p (Holm)", "d", "test")


def test_cell(c: stats.Comparison) -> str:
    """The test that gave p (paired / welch), or "—" where none could run (n too small, no spread)."""
    return c.test if c.p == c.p else "—"  # p is NaN when nothing was tested


def power_column(mde: float) -> str:
    return f"seeds for 80% power at Δ = {mde:g}"


def stats_cells(c: stats.Comparison | None, mde: float | None) -> list[str]:
    """p (Holm), d, test [, seeds for power] of one row; "—" where there is nothing."""
    cells = ["—", "—", "—"] if c is None else [_num(c.p_adj, ".3g"), _num(c.d, "+.2f"), test_cell(c)]
    if mde is not None:
        n = seeds_needed(c, mde)
        cells.append("—" if n is None else str(n))
    return cells


def seeds_needed(c: stats.Comparison | None, mde: float) -> int | None:
    if c is None or math.isnan(c.sd):
        return None
    return compare.seeds_for_power(c.sd, mde, paired=c.test == stats.PAIRED)


def stats_note(rows: list[RunRow], mde: float | None) -> str:
    """The paragraph under the main table: which tests, what the CI and p are, k of the adjustment."""
    tested = [r.comparison for r in rows if r.comparison is not None and r.comparison.testable]
    n_paired = sum(c.test == stats.PAIRED for c in tested)
    note = (
        "acc: final test accuracy, mean ± sample std (ddof = 1) over the finished seeds (n). "
        "Δ: difference to the baseline run. test: *paired* — a paired t test on the per-seed differences, "
        "used when every finished seed of the run has its baseline partner (the same seed: GAAF has no "
        "parameters, so one seed gives every arm the same initial weights and batch order; Δ is then the "
        "mean difference over those seeds); else *welch* — Welch's t (unequal variances, Welch–Satterthwaite "
        f"degrees of freedom). Here: {n_paired} paired, {len(tested) - n_paired} Welch. [95% CI]: the "
        "unadjusted 95% confidence interval of Δ. p (Holm): the two-sided p, Holm-adjusted across the "
        f"k = {len(tested)} comparisons of this study with their baseline (unadjusted p: runs.csv `p`). "
        "verdict: *better* / *worse* when p (Holm) < 0.05, else *no significant difference* — so an "
        "unadjusted CI that excludes 0 can still read *no significant difference*; *n too small*: fewer "
        "than two seeds (pairs) on a side (Δ is still shown, marked *no test*); *no spread: cannot test*: "
        "every seed identical (every per-seed difference equal), so no p. d: Cohen's d (paired: d_z = mean / "
        "sd of the per-seed differences; Welch: Δ / pooled sd)."
    )
    if mde is not None:
        note += (f" {power_column(mde)}: seeds per arm with which a two-sided test at unadjusted α = 0.05 "
                 f"detects a true Δ of {mde:g} with probability 0.8, at the row's observed spread (paired: sd "
                 "of the per-seed differences; Welch: pooled sd); t-corrected normal approximation, within "
                 "one seed of the exact noncentral-t answer.")  # fmt: skip
    return note + (" published: the single-run number from the seed (the first public GAAF code, Keras; "
                   "full CIFAR-10, 200 epochs) or the paper (Hahn & Choi, arXiv:1806.09783; full data, epochs "
                   "not stated), with the setting it was trained on. Per-seed numbers: report.csv; "
                   "statistics: runs.csv.")  # fmt: skip


TARGET_COLUMNS = ("run", "target", "epochs to target", "Δ epochs vs baseline [95% CI]", "verdict", "p (Holm)",
                  "test")  # fmt: skip
FEWER, MORE = "fewer epochs", "more epochs"


def target_verdict(c: stats.Comparison) -> str:
    """The verdict in epochs: a negative Δ (sooner) that is significant is *fewer epochs*."""
    return {stats.BETTER: MORE, stats.WORSE: FEWER}.get(c.verdict, c.verdict)


def target_rows(study: Study, rows: list[RunRow]) -> list[list[str]]:
    out = []
    for row in rows:
        t, c = row.to_target, row.to_target_comparison
        if t is None:
            continue
        if c is None:
            cells = ["baseline", "—", "—", "—"]
        else:
            cells = [c.format(2) + _vs(study, row), target_verdict(c), _num(c.p_adj, ".3g"), test_cell(c)]
        out.append([row.name, f"{t.target:.4f}", t.format(), *cells])
    return out


def target_note(rows: list[RunRow]) -> str:
    k = sum(r.to_target_comparison is not None and r.to_target_comparison.testable for r in rows)
    return (
        "The paper's claim is the effect of dropout *in fewer epochs*. target: the baseline's mean final test "
        "accuracy. epochs to target: the first epoch whose test accuracy (metrics.csv) is ≥ target, mean over "
        "the finished seeds, and how many seeds reached it; a seed that never does counts as epochs + 1 "
        "(censored), so a mean marked ≥ is a lower bound, and so is a Δ it enters. Δ epochs: the run's epochs "
        "to target minus the baseline's, per seed (test as above: paired when every seed has its baseline "
        f"partner, else Welch); p Holm-adjusted across the k = {k} comparisons of this table; *fewer epochs* / "
        "*more epochs* when p (Holm) < 0.05. Per seed: report.csv `epochs_to_target`."
    )


RUN_STATS_COLUMNS = ("baseline", "test", "diff", "ci_low", "ci_high", "df", "p", "p_adj", "d", "verdict",
                     "mde", "seeds_for_power", "target", "epochs_to_target", "target_reached", "target_diff",
                     "target_ci_low", "target_ci_high", "target_test", "target_p", "target_p_adj",
                     "target_verdict")  # fmt: skip


def run_stats_fields(study: Study, row: RunRow, mde: float | None) -> dict[str, Any]:
    """runs.csv's statistics of one row (RUN_STATS_COLUMNS); numbers as numbers, None where there is none."""
    w, t, c = row.comparison, row.to_target, row.to_target_comparison
    is_baseline = row.name == study.baseline_of(row.spec) or row.name == study.baseline
    out: dict[str, Any] = {"baseline": study.baseline_of(row.spec), "mde": mde,
                           "verdict": w.verdict if w else ("baseline" if is_baseline else None)}  # fmt: skip
    for key in ("test", "diff", "ci_low", "ci_high", "df", "p", "p_adj", "d"):
        out[key] = _f(getattr(w, key)) if w else None
    out["seeds_for_power"] = seeds_needed(w, mde) if mde is not None else None
    if t is not None:
        out.update(target=t.target, epochs_to_target=_f(t.mean()), target_reached=f"{t.reached} of {len(t.by_seed)}")
    if c is not None:
        out.update(target_diff=_f(c.diff), target_ci_low=_f(c.ci_low), target_ci_high=_f(c.ci_high),
                   target_test=c.test, target_p=_f(c.p), target_p_adj=_f(c.p_adj), target_verdict=target_verdict(c))  # fmt: skip
    return out


def seed_epochs_to_target(row: RunRow, seed: int) -> int | str | None:
    """report.csv's `epochs_to_target` of one seed: the epoch, "never", or None (not finished / no target)."""
    if row.to_target is None or seed not in row.to_target.by_seed:
        return None
    e = row.to_target.by_seed[seed]
    return "never" if e is None else e


def _vs(study: Study, row: RunRow) -> str:
    against = study.baseline_of(row.spec)
    return f" vs {against}" if against != study.baseline else ""


def _num(x: float, spec: str) -> str:
    return "—" if x is None or math.isnan(x) else format(x, spec)


def _f(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else x
