"""`gaaf report DIR`: the tables of :mod:`gaaf.experiments.report` and the report's figures.

    build_report(Path("runs/demo"))   # -> runs/demo/report/{report.md, report.csv, runs.csv, *.png}

Figures: acc_vs_shift.png (accuracy vs the sigmoid shape's shift, the published numbers overlaid),
learning_curves.png (test accuracy per epoch), and for runs trained with --probe the probe plots of
:mod:`gaaf.plots.probes`. An arm keeps one colour across acc_vs_shift, the learning curves and the
probe histograms (:mod:`.arm_colors`: the baseline black, a shifted GAAF series one hue from light to
dark by shift, a GAAF run without a shift red); the per-layer probe figures colour layers instead.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from ..activations.registry import is_gaaf_activation
from ..experiments import stats
from ..experiments import settings
from ..experiments.report import Report, RunRow, check_mde, load_rows, probe_runs, require_finished, write_report
from ..experiments.study import Study
from .arm_colors import arm_colors, series_colors, shift_of
from .figure import new_figure, save_figure
from .probes import plot_probes

#: captions of the probe figures in report.md
PROBE_CAPTIONS = {"probe_saturation.png": "Probes: fraction of activation inputs in the saturation area",
                  "probe_grad.png": "Probes: mean |gradient| reaching each activation site",
                  "probe_hist.png": "Probes: activation input histograms, last epoch"}  # fmt: skip


def build_report(root: Path, out: "Path | None" = None, *, plots: bool = True, mde: "float | None" = None) -> Report:
    """Read the sweep folder `root`, write the report files into `out` (default root/report); `mde`: add
    the seeds for 80% power against that difference in accuracy. Raises NothingToReport (writing
    nothing) when no run in `root` has finished yet, UserError for a bad `mde` (before anything is drawn)."""
    root = Path(root)
    out = Path(out) if out is not None else root / "report"
    check_mde(mde)
    study, rows = load_rows(root)
    require_finished(root, rows)
    return write_report(root, out, study, rows, report_figures(study, rows, out) if plots else [], mde=mde)


def report_figures(study: Study, rows: list[RunRow], out: Path) -> list[tuple[str, Path]]:
    """Draw every figure the report has data for into `out`; (caption, path) of each."""
    images: list[tuple[str, Path]] = []
    colors = arm_colors(rows, study.baseline)  # one colour per arm in every figure
    for path, caption in ((plot_acc_vs_shift(study, rows, out / "acc_vs_shift.png", colors), "Accuracy vs shift"),
                          (plot_learning_curves(rows, out / "learning_curves.png", colors),
                           "Learning curves")):  # fmt: skip
        if path is not None:
            images.append((caption, path))
    runs = probe_runs(study, rows)
    probed = {f"{name}, seed {seed}": folder for name, (seed, folder) in runs.items()}
    if probed:  # runs trained with --probe (study key probe = true): GAAF vs baseline, per layer
        by_label = {f"{name}, seed {seed}": colors[name] for name, (seed, _) in runs.items()}
        images += [(PROBE_CAPTIONS.get(path.name, path.stem), path)
                   for path in plot_probes(probed, out, colors=by_label)]  # fmt: skip
    return images


def plot_acc_vs_shift(study: Study, rows: list[RunRow], path: Path,
                      colors: "dict[str, Any] | None" = None) -> Path | None:
    """Final test accuracy vs the sigmoid shape's shift: ours as mean ± std error bars (one series
    per activation/variant), the published single runs as crosses, the baseline's mean as a line
    inside a grey band of ± one sample std over its seeds (one legend entry for both); GAAF runs
    without a shift as lines in their arm's colour (`colors`, default :func:`~.arm_colors.arm_colors`).
    Returns None (and writes nothing) when the study has no GAAF runs with a shift, or none of them
    has a result or a published number."""
    series: dict[str, list[tuple[float, RunRow]]] = defaultdict(list)
    flat = []  # GAAF runs without s(x) (or another shape): horizontal reference lines
    for row in rows:
        found = shift_of(row)
        if found is not None:
            series[found[0]].append((found[1], row))
        elif is_gaaf_activation(str(row.config.get("activation", ""))) and (row.summary.n or row.spec.published):
            flat.append(row)
    if not series:
        return None
    fig = new_figure(7.5, 5.2, dpi=120, layout="constrained")
    ax = fig.add_subplot()
    hues = series_colors(series)  # as the arms' colours in the other figures (gaaf.plots.arm_colors)
    for label, points in sorted(series.items()):
        points.sort(key=lambda p: p[0])
        color = hues[label]
        ours = [(x, r.summary) for x, r in points if r.summary.n]
        if ours:
            ax.errorbar([x for x, _ in ours], [s.mean for _, s in ours], yerr=[s.std for _, s in ours],
                        color=color, marker="o", capsize=4, label=f"{label} (ours, mean ± std)")  # fmt: skip
        published = [(x, r.spec.published) for x, r in points if r.spec.published is not None]
        if published:
            ax.plot([x for x, _ in published], [y for _, y in published], color=color, marker="x", linestyle=":",
                    markersize=8, alpha=0.8, label=f"{label} ({_published_label(points[0][1])})")  # fmt: skip
    refs, bands = _reference_lines(ax, study, rows, flat,
                                   colors if colors is not None else arm_colors(rows, study.baseline))
    _frame(ax, refs, [x for points in series.values() for x, _ in points])
    ax.set_xlabel("shift of the sigmoid shape s(x) = sigmoid(x + shift)")
    ax.set_ylabel("final test accuracy")
    ax.set_title("\n".join(filter(None, [study.title or "Accuracy vs shift", _ours_label(rows)])), fontsize=9)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if not handles:  # shifted runs, but none finished and none published: nothing to show
        return None
    # below the axes, never over a line (loc="best" still hid reference lines near the bottom)
    fig.legend([(h, bands[h]) if h in bands else h for h in handles], labels, fontsize=7, ncol=2,
               loc="outside lower center", frameon=False)  # fmt: skip
    return save_figure(fig, path, dpi=120, tight=False)


def _reference_lines(ax, study: Study, rows: list[RunRow], flat: list[RunRow],
                     colors: "dict[str, Any]") -> tuple[list[float], dict]:
    """Draw the horizontal lines: the baseline (ours: mean inside a ± std band; published) and GAAF runs
    without a shift. Returns (their heights, {the baseline mean's line: its band})."""
    refs: list[float] = []

    def hline(y: float, **kw: Any) -> Any:
        refs.append(y)
        return ax.axhline(y, **kw)

    baseline = next((r for r in rows if r.name == study.baseline), None)
    bands = {}  # legend entry (the mean's line) → the ± std band drawn with it: one entry for both
    if baseline is not None and baseline.summary.n:
        m, s, n = baseline.summary.mean, baseline.summary.std, baseline.summary.n
        spread = "mean ± std" if s > 0 else "mean"
        line = hline(m, color="black", linewidth=1.2, label=f"baseline {baseline.name} (ours): {spread} (n={n})")
        if s > 0:
            bands[line] = ax.axhspan(m - s, m + s, color="black", alpha=0.08)
    if baseline is not None and baseline.spec.published is not None:
        hline(baseline.spec.published, color="black", linestyle="--", linewidth=1,
              label=f"baseline {baseline.name} ({_published_label(baseline)})")  # fmt: skip
    for row in flat:
        if row.summary.n:
            hline(row.summary.mean, color=colors[row.name], linestyle="-.", linewidth=1, label=f"{row.name} (ours)")
        if row.spec.published is not None:
            hline(row.spec.published, color=colors[row.name], linestyle=":", linewidth=1,
                  label=f"{row.name} ({_published_label(row)})")  # fmt: skip
    return refs, bands


def _published_label(row: RunRow) -> str:
    """`published: full data, 200 epochs, single run` — what a published point was trained on."""
    return f"published: {settings.published_setting(row.spec.published_source)}, single run"


def _ours_label(rows: list[RunRow]) -> str:
    """`ours: 256 of 50,000 training images, 1 epoch` when our runs share a subset or fewer epochs than
    the published runs beside them (the figure travels without the report's warning); else ""."""
    if not settings.comparability_warning([(r.name, settings.setting_of(r.config), r.spec.published_source)
                                           for r in rows if r.spec.published is not None]):  # fmt: skip
        return ""
    shared, differ = settings.common_settings([settings.setting_of(r.config) for r in rows],
                                              only=("train images", "test images", "epochs"))  # fmt: skip
    return "ours: " + ", ".join(filter(None, [shared, *(f"{d} differ per run" for d in differ)]))


def _frame(ax, refs: "list[float]", shifts: "list[float]") -> None:
    """Axis limits that show every line with a margin: horizontal reference lines (`refs`, the
    baselines) take no part in autoscaling, and a study with one shift would get a ±0.05 wide x axis."""
    if refs:
        lo, hi = ax.get_ylim()
        lo, hi = min(lo, *refs), max(hi, *refs)
        pad = 0.05 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    if shifts and min(shifts) == max(shifts):
        ax.set_xlim(shifts[0] - 1.0, shifts[0] + 1.0)


def plot_learning_curves(rows: list[RunRow], path: Path, colors: "dict[str, Any] | None" = None) -> Path | None:
    """Test accuracy per epoch for every run: each seed thin, the mean over seeds thick, in `colors`
    (arm name → colour; default :func:`~.arm_colors.arm_colors` without a baseline).
    Returns None when no run has a finished epoch."""
    if not any(r.metrics for row in rows for r in row.results.values()):
        return None
    fig = new_figure(8.5, 4.8, dpi=120, layout="constrained")
    ax = fig.add_subplot()
    colors = colors if colors is not None else arm_colors(rows, None)
    for row in rows:
        color = colors[row.name]
        curves = [r.metrics for _, r in sorted(row.results.items()) if r.metrics]
        if not curves:
            continue
        by_epoch: dict[int, list[float]] = defaultdict(list)
        for metrics in curves:
            xs = [int(m["epoch"]) for m in metrics if "epoch" in m and "test_acc" in m]
            ys = [m["test_acc"] for m in metrics if "epoch" in m and "test_acc" in m]
            if len(curves) > 1:
                ax.plot(xs, ys, color=color, linewidth=0.7, alpha=0.35, marker="." if len(xs) < 3 else None)
            for x, y in zip(xs, ys):
                by_epoch[x].append(y)
        epochs = sorted(by_epoch)
        means = [stats.summarize(by_epoch[e]).mean for e in epochs]
        n = max(len(v) for v in by_epoch.values())
        ax.plot(epochs, means, color=color, linewidth=2, marker="o" if len(epochs) < 12 else None,
                label=f"{row.name} (n={n})")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("Learning curves (thick: mean over seeds; thin: each seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save_figure(fig, path, dpi=120, tight=False)
