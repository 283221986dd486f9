"""The rows of a study's report: each run's per-seed results read from the sweep folder, and the
statistics over them (stats.py, compare.py, target.py).

    study, rows = load_rows(Path("runs/demo"))
    rows[1].summary        # mean ± std of the final test accuracy over the finished seeds
    rows[1].comparison     # vs its baseline: paired or Welch t, Holm-adjusted p, Cohen's d
    rows[1].to_target      # epochs to the baseline's mean final accuracy, per seed
    rows[1].to_target_comparison   # the same comparison on those epochs
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError, plural
from . import compare, folders, stats, target
from .study import RunSpec, Study


@dataclass
class RunRow:
    """One study run with its per-seed results and the statistics over them."""

    spec: RunSpec
    results: dict[int, folders.RunResult]  # seed → what its folder holds
    config: dict[str, Any]
    summary: stats.Summary = field(default_factory=lambda: stats.summarize([]))
    comparison: stats.Comparison | None = None  # final accuracy vs the baseline (None: no baseline)
    to_target: target.TimeToTarget | None = None  # epochs to the baseline's mean final accuracy
    to_target_comparison: stats.Comparison | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def accs(self) -> list[float]:
        return list(self.acc_by_seed().values())

    def acc_by_seed(self) -> dict[int, float]:
        """{seed: final test accuracy} of the finished seeds, by seed."""
        return {s: r.final_acc for s, r in sorted(self.results.items()) if r.final_acc is not None}

    def metrics_by_seed(self) -> dict[int, list[dict[str, float]]]:
        """{seed: metrics.csv rows} of the finished seeds."""
        return {s: r.metrics for s, r in sorted(self.results.items()) if r.final_acc is not None}




class NothingToReport(UserError):
    """A sweep folder in which no run has finished yet (`gaaf report` says so and exits 1)."""


def require_finished(root: Path, rows: list[RunRow]) -> None:
    """Raise NothingToReport, counting the run folders by state, when no run has finished."""
    states = [r.state for row in rows for r in row.results.values()]
    if folders.FINISHED in states:
        return
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states), key=states.index))
    raise NothingToReport(f"nothing to report yet: none of the {plural(len(states), 'run folder')} under {root} has "
                          f"finished ({counts or 'none planned'})")  # fmt: skip


def load_rows(root: Path) -> tuple[Study, list[RunRow]]:
    """The study (from study.json, or inferred from the folders) and one RunRow per run."""
    root = Path(root)
    saved = folders.read_json(root / folders.STUDY_FILE)
    expected: dict[str, set[int]] = {}
    planned_configs: dict[str, dict[str, Any]] = {}
    if isinstance(saved, dict) and isinstance(saved.get("study"), dict):
        study = Study.from_dict(saved["study"])
        for r in saved.get("runs", []):
            expected.setdefault(r["name"], set()).add(int(r["seed"]))
            planned_configs.setdefault(r["name"], r.get("config", {}))
    else:  # no study.json: a folder of runs/<name>/seed<k>/ written some other way
        names = sorted(p.name for p in (root / "runs").glob("*") if p.is_dir())
        if not names:
            raise UserError(f"{root} holds no study.json and no runs/<run>/seed<k>/ folders; "
                            "pass the --out folder of gaaf sweep")  # fmt: skip
        study = Study(title=root.name, description="", base={}, runs=tuple(RunSpec(n, {}) for n in names), seeds=())
    rows = []
    for spec in study.runs:
        seeds = set(expected.get(spec.name, set()) or study.seeds)
        for p in (root / "runs" / spec.name).glob("seed*"):  # seeds run by earlier sweeps too
            if p.is_dir() and p.name[4:].isdigit():
                seeds.add(int(p.name[4:]))
        results = {s: folders.read_run(folders.run_dir(root, spec.name, s)) for s in sorted(seeds)}
        config = next((r.config for r in results.values() if r.config), None) or planned_configs.get(spec.name) or {
            **study.base, **spec.overrides}
        rows.append(RunRow(spec, results, config))
    for row in rows:
        row.summary = stats.summarize(row.accs())
    analyze(study, rows)
    return study, rows


def analyze(study: Study, rows: list[RunRow]) -> None:
    """Fill in each row's comparisons with its baseline (Holm-adjusted across the study) and its time
    to target (its baseline's mean final accuracy; a baseline's own is to its own mean)."""
    by_name = {row.name: row for row in rows}
    for row in rows:
        baseline = by_name.get(study.baseline_of(row.spec) or "", row if row.name == study.baseline else None)
        if baseline is None or not baseline.summary.n:
            continue
        row.to_target = _time_to(baseline.summary.mean, row)
        if baseline is not row:
            row.comparison = compare.compare(row.acc_by_seed(), baseline.acc_by_seed())
            # the baseline's epochs to the same target; its "never" counts as its own epochs + 1
            reference = _time_to(baseline.summary.mean, baseline)
            row.to_target_comparison = compare.compare(row.to_target.censored(), reference.censored())
    for attr in ("comparison", "to_target_comparison"):  # two families, each adjusted across the study
        for row, adjusted in zip(rows, compare.adjust([getattr(row, attr) for row in rows])):
            setattr(row, attr, adjusted)


def _time_to(goal: float, row: RunRow) -> target.TimeToTarget:
    metrics = row.metrics_by_seed()
    return target.time_to_target(goal, target.run_epochs(row.config, metrics), metrics)
