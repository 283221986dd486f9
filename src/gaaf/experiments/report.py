"""`gaaf report DIR`: the seed's results table, with statistics, from a sweep folder.

One row per run of the study. The columns follow the seed's table (num, data, backbone, activation,
shift, steps, acc, batch_size, optimizer, lr), renamed to say what they hold (run, dataset, model,
epochs; see COLUMN_NOTE), with what a reader needs to compare like with like added: the training and
test images used, the recipe (preset, optimizer, lr, batch size, augmentation), the published number
with the setting it was trained on, the difference to the baseline with its unadjusted 95% confidence
interval, a verdict from the Holm-adjusted p, Cohen's d and the test (paired or Welch); below it, the
epochs each run took to reach the baseline's mean final accuracy (target.py).

    acc   = mean ± std (n=k) of the final test accuracy over the k finished seeds (std: ddof = 1)
    Δ     = run − baseline: paired t on the per-seed differences when every seed has its partner, else
            Welch's t; p Holm-adjusted across the study (stats.py, compare.py; text: report_stats.py)

Above the table: the settings every run shares (settings.py), the ones that differ between runs,
and a one-line warning when runs with a published number used fewer images or epochs than it.

Files (all atomic): report.md (tables + plots), report.csv (one row per run × seed: the raw
numbers), runs.csv (one row per run: the statistics); both CSVs carry the training setting. A sweep
that is not finished still gets a report: missing, interrupted and failed runs are listed; one with
no finished run at all raises NothingToReport (`gaaf report` exits 1).

This module reads the sweep folder and writes the tables; the figures (acc_vs_shift.png,
learning_curves.png, the probe plots) are drawn by :mod:`gaaf.plots.report`, whose `build_report`
puts both together (`gaaf report`).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..activations import describe_activation
from ..errors import UserError, plural
from ..io import atomic_write_text
from ..train.probes import PROBES_FILE
from . import folders, report_stats, settings, trainopts
from .rows import NothingToReport, RunRow, load_rows, require_finished
from .study import RunSpec, Study

__all__ = ["NothingToReport", "Report", "RunRow", "load_rows", "require_finished", "write_report", "probe_runs"]

TABLE_COLUMNS = ("run", "dataset", "model", "activation", "shift", "train images", "test images", "epochs",
                 "acc", "published", "Δ vs baseline [95% CI]", "verdict", *report_stats.STATS_COLUMNS, "preset",
                 "optimizer", "lr", "batch size", "augment")  # fmt: skip
#: the training setting in both CSVs: images used and the split's size, epochs asked, the recipe
SETTING_CSV_COLUMNS = ("dataset", "train_images", "train_images_total", "test_images", "test_images_total",
                       "epochs", "preset", "optimizer", "lr", "batch_size", "augment")  # fmt: skip
SEED_CSV_COLUMNS = ("run", "seed", "state", "model", "activation", "shape", "shift", "variant", "stem_activation",
                    *SETTING_CSV_COLUMNS, "final_test_acc", "best_test_acc", "best_epoch", "epochs_done",
                    "total_seconds", "epochs_to_target", "published", "published_source", "published_setting",
                    "folder")  # fmt: skip
RUN_CSV_COLUMNS = ("run", "model", *SETTING_CSV_COLUMNS, "n", "mean", "std", "accs", "published",
                   "published_source", "published_setting", *report_stats.RUN_STATS_COLUMNS, "missing")  # fmt: skip


@dataclass
class Report:
    study: Study
    rows: list[RunRow]
    table_markdown: str
    problems_markdown: str
    files: list[Path]
    settings_markdown: str = ""  # the lines above the table: shared settings, differences, warning


# ---------------------------------------------------------------------------------------------
# formatting


def _published(spec: RunSpec) -> str:
    """`0.8084 (seed; full data, 200 epochs)`: the number and what it was trained on."""
    if spec.published is None:
        return "—"
    source = f"{spec.published_source}; " if spec.published_source else ""
    return f"{spec.published:.4f} ({source}{settings.published_setting(spec.published_source)})"


def settings_markdown(rows: list[RunRow]) -> str:
    """What every run was trained on, which settings differ between runs, and the warning when runs
    used fewer images or epochs than their published numbers."""
    of_row = {row.name: settings.setting_of(row.config, loaded(row)) for row in rows}
    shared, differ = settings.common_settings(list(of_row.values()))
    lines = [f"**Trained on:** {shared}." if shared else ""]
    if differ:
        lines.append(f"**Differs between runs** (see each row): {', '.join(differ)}.")
    lines.append(settings.comparability_warning([(row.name, of_row[row.name], row.spec.published_source)
                                                 for row in rows if row.spec.published is not None]))  # fmt: skip
    return "\n\n".join(line for line in lines if line)


def table_rows(study: Study, rows: list[RunRow], mde: float | None = None) -> list[list[str]]:
    out = []
    for row in rows:
        c = row.config
        act, shift = describe_activation(c)
        against = study.baseline_of(row.spec)
        if row.name == against or (row.comparison is None and row.name == study.baseline):
            delta, verdict = "baseline", "—"
        elif row.comparison is None:
            delta, verdict = "—", "—"
        else:
            delta = row.comparison.format() if not math.isnan(row.comparison.diff) else "—"
            if against != study.baseline:  # a run with its own baseline says which
                delta += f" vs {against}"
            verdict = row.comparison.verdict
        acc = row.summary.format()
        n_total = len(row.results)
        if row.summary.n < n_total:
            acc += f" [{n_total - row.summary.n} of {n_total} not finished]"
        s = settings.setting_of(c, loaded(row))
        out.append([row.name, s.dataset, str(c.get("model", "?")), act, shift, settings.images_cell(s.train),
                    settings.images_cell(s.test), str(s.epochs if s.epochs is not None else "?"), acc,
                    _published(row.spec), delta, verdict, *report_stats.stats_cells(row.comparison, mde), s.preset,
                    s.optimizer, s.lr, s.batch_size, s.augment])  # fmt: skip
    return out


def markdown_table(header: "tuple[str, ...] | list[str]", rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines)


def problems_markdown(rows: list[RunRow]) -> str:
    """The runs that have no final result yet, by state, with the first line of each error."""
    lines = []
    for row in rows:
        for seed, r in sorted(row.results.items()):
            if r.state == folders.FINISHED:
                continue
            detail = ""
            if r.state == folders.FAILED:
                first = next((ln for ln in reversed(r.error.splitlines()) if ln.strip()), "")
                detail = f": {first.strip()[:160]}" if first else ""
            elif r.state == folders.DAMAGED:  # left out of the statistics; each file and what is wrong
                detail = ": " + "; ".join(r.damage)
            elif r.state == folders.RUNNING:
                detail = f" ({r.running}); included once it finishes"
            elif r.state == folders.INTERRUPTED:
                detail = f" after {plural(folders.epochs_done(r.folder), 'epoch')}; re-run gaaf sweep to resume"
            lines.append(f"- `{row.name}/seed{seed}`: {r.state}{detail}")
    if not lines:
        return ""
    head = f"**Not finished ({plural(len(lines), 'run folder')})** — statistics use the finished seeds only:"
    return head + "\n\n" + "\n".join(lines)


def seed_rows(rows: list[RunRow], root: Path) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        for seed, r in sorted(row.results.items()):
            c = trainopts.resolved(r.config or row.config)  # an old config.json's None: the default it meant
            s = r.summary
            out.append({
                "run": row.name, "seed": seed, "state": r.state, "model": c.get("model"),
                "activation": c.get("activation"), "shape": c.get("shape"), "shift": c.get("shift"),
                "variant": c.get("variant"), "stem_activation": c.get("stem_activation"), **setting_fields(c, s),
                "final_test_acc": s.get("final_test_acc") if r.state == folders.FINISHED else None,
                "best_test_acc": s.get("best_test_acc"), "best_epoch": s.get("best_epoch"),
                "epochs_done": folders.epochs_done(r.folder), "total_seconds": s.get("total_seconds"),
                "epochs_to_target": report_stats.seed_epochs_to_target(row, seed),
                "published": row.spec.published, "published_source": row.spec.published_source,
                "published_setting": _published_setting(row.spec), "folder": _relative(r.folder, root),
            })  # fmt: skip
    return out


def run_rows(study: Study, rows: list[RunRow], mde: float | None = None) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        out.append({
            "run": row.name, "model": row.config.get("model"), **setting_fields(row.config, loaded(row)),
            "n": row.summary.n, "mean": _f(row.summary.mean), "std": _f(row.summary.std),
            "accs": " ".join(f"{a:.6g}" for a in row.accs()), "published": row.spec.published,
            "published_source": row.spec.published_source, "published_setting": _published_setting(row.spec),
            **report_stats.run_stats_fields(study, row, mde),
            "missing": sum(r.state != folders.FINISHED for r in row.results.values()),
        })  # fmt: skip
    return out


def loaded(row: RunRow) -> dict[str, Any] | None:
    """The images the row's finished seeds loaded (`train_images`, `test_images` of their summaries),
    where they all record the same; else None (the settings then come from the config)."""
    counts = {(settings.loaded_count(r.summary, "train_images"), settings.loaded_count(r.summary, "test_images"))
              for r in row.results.values() if r.state == folders.FINISHED}
    if len(counts) != 1:
        return None
    train, test = counts.pop()
    return {"train_images": train, "test_images": test}


def setting_fields(config: dict[str, Any], summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SETTING_CSV_COLUMNS of one config (and the images its run loaded, from `summary` where it
    records them): numbers as numbers, the augmentation as `crop+flip`/`none`."""
    s = settings.setting_of(config, summary)
    return {"dataset": config.get("dataset"), "train_images": s.train.used, "train_images_total": s.train.total,
            "test_images": s.test.used, "test_images_total": s.test.total, "epochs": config.get("epochs"),
            "preset": config.get("preset"), "optimizer": config.get("optimizer"), "lr": config.get("lr"),
            "batch_size": config.get("batch_size"), "augment": s.augment if s.augment != "?" else None}  # fmt: skip


def _published_setting(spec: RunSpec) -> str | None:
    return settings.published_setting(spec.published_source) if spec.published is not None else None


def _f(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def to_csv(columns: "tuple[str, ...]", rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# the report


COLUMN_NOTE = (
    "Columns: train images / test images: images used of the split (what the runs loaded; `limit_train`, "
    "`limit_test`); epochs: "
    "epochs asked for; preset, optimizer, lr, batch size, augment: the recipe. Against the seed's README "
    "table: run = num, dataset = data, model = backbone, epochs = steps (the seed's 200 \"steps\" are "
    "epochs), batch size = batch_size; optimizer and lr as there."
)


def write_report(root: Path, out: Path, study: Study, rows: list[RunRow],
                 images: Sequence[tuple[str, Path]] = (), mde: float | None = None) -> Report:
    """Write report.md (linking `images`: (caption, PNG path) pairs, already drawn into `out`),
    report.csv and runs.csv into `out`. mde: the difference to plan seeds for (`--mde`), or None."""
    root, out = Path(root), Path(out)
    check_mde(mde)
    columns = TABLE_COLUMNS
    if mde is not None:  # the power column right after the statistics, where table_rows puts its cells
        at = TABLE_COLUMNS.index(report_stats.STATS_COLUMNS[-1]) + 1
        columns = (*TABLE_COLUMNS[:at], report_stats.power_column(mde), *TABLE_COLUMNS[at:])
    table = markdown_table(columns, table_rows(study, rows, mde))
    above = settings_markdown(rows)
    problems = problems_markdown(rows)
    md = [f"# {study.title or 'Study report'}", ""]
    if study.description:
        md += [study.description.strip(), ""]
    n_done = sum(r.state == folders.FINISHED for row in rows for r in row.results.values())
    n_all = sum(len(row.results) for row in rows)
    md += [f"Sweep folder: `{root}` — {n_done}/{n_all} run folders finished"
           + (f"; baseline: `{study.baseline}`" if study.baseline else "") + ".", ""]  # fmt: skip
    md += [above, "", table, "", COLUMN_NOTE, "", report_stats.stats_note(rows, mde), ""]
    targets = report_stats.target_rows(study, rows)
    if targets:
        md += ["## Time to target", "", markdown_table(report_stats.TARGET_COLUMNS, targets), "",
               report_stats.target_note(rows), ""]  # fmt: skip
    if any(row.spec.published_source == "paper" for row in rows):
        md += ["The paper does not say which CIFAR architecture it used; its numbers are shown beside ours "
               f"for orientation only (ours: {', '.join(sorted({str(r.config.get('model')) for r in rows}))}).", ""]
    if problems:
        md += [problems, ""]
    for caption, path in images:
        md += [f"## {caption}", "", f"![{caption}]({path.name})", ""]
    seeds = seed_rows(rows, root)
    md += ["## Per-seed results", "", markdown_table(
        ("run", "seed", "state", "final test acc", "best test acc", "epochs done", "seconds"),
        [[s["run"], str(s["seed"]), s["state"], _cell(s["final_test_acc"]), _cell(s["best_test_acc"]),
          str(s["epochs_done"]), _cell(s["total_seconds"], 1)] for s in seeds],
    ), ""]  # fmt: skip
    atomic_write_text(out / "report.md", "\n".join(md))
    atomic_write_text(out / "report.csv", to_csv(SEED_CSV_COLUMNS, seeds))
    atomic_write_text(out / "runs.csv", to_csv(RUN_CSV_COLUMNS, run_rows(study, rows, mde)))
    files = [out / "report.md", out / "report.csv", out / "runs.csv"] + [path for _, path in images]
    return Report(study, rows, table, problems, files, above)


def probe_runs(study: Study, rows: list[RunRow]) -> dict[str, tuple[int, Path]]:
    """{run name: (seed, folder) of its first seed that recorded probes.json}, the baseline first."""
    found: dict[str, tuple[int, Path]] = {}
    for row in sorted(rows, key=lambda r: r.name != study.baseline):
        for seed, result in sorted(row.results.items()):
            if (result.folder / PROBES_FILE).is_file():
                found[row.name] = (seed, result.folder)
                break
    return found


def _cell(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "—"


def check_mde(mde: float | None) -> None:
    """`--mde`: a difference in accuracy, a number in (0, 1); UserError otherwise."""
    if mde is not None and not (isinstance(mde, (int, float)) and 0.0 < mde < 1.0):
        raise UserError(f"--mde must be a difference in accuracy between 0 and 1 (e.g. 0.005), got {mde!r}")
