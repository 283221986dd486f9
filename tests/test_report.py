"""`gaaf report` on fabricated run folders in the documented format (docs/DEVELOPING.md),
including a partly finished sweep: missing, interrupted and failed runs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gaaf.activations import describe_activation
from gaaf.cli import main
from gaaf.experiments import folders, stats
from gaaf.experiments.study import parse_study
from gaaf.experiments.sweep import plan, write_study_json
from gaaf.plots.report import build_report

STUDY = """
title = "fabricated"
seeds = [0, 1, 2]
baseline = "relu"

[base]
model = "resnet8_v1"
epochs = 3
stem_activation = "relu"

[[runs]]
name = "relu"
activation = "relu"
published = 0.8084
published_source = "seed"

[[runs]]
name = "gaaf_relu-shift=-1"
activation = "gaaf_relu"
shift = -1.0
published = 0.7948
published_source = "seed"

[[runs]]
name = "gaaf_relu-shift=2"
activation = "gaaf_relu"
shift = 2.0
published = 0.7441
published_source = "seed"

[[runs]]
name = "gaaf_relu-shape=none"
activation = "gaaf_relu"
shape = "none"

[[runs]]
name = "gaaf_relu-round"
activation = "gaaf_relu"
variant = "round"
shift = -1.0
"""

#: final accuracies per run and seed (None: that seed is left unfinished in some way)
FINALS = {
    "relu": [0.80, 0.81, 0.805],
    "gaaf_relu-shift=-1": [0.79, 0.80, 0.795],  # within noise of relu
    "gaaf_relu-shift=2": [0.70, 0.71, 0.705],  # clearly worse
    "gaaf_relu-shape=none": [0.66, None, None],  # one finished: n too small
    "gaaf_relu-round": [None, None, None],  # nothing finished
}


def write_run(folder: Path, config: dict, accs: list[float], finished: bool = True) -> None:
    """A run folder as `gaaf train` writes it: config.json, metrics.csv, summary.json, last.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"config": config, "meta": {"gaaf_version": "test"}}))
    lines = ["epoch,lr,train_loss,train_acc,test_loss,test_acc,epoch_seconds,images_per_second"]
    lines += [f"{e},0.001,{2 - a},{a},{2.1 - a},{a},1.5,100.0" for e, a in enumerate(accs, start=1)]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    (folder / "last.pt").write_bytes(b"not a real checkpoint")
    if finished:
        (folder / "summary.json").write_text(json.dumps({
            "status": "finished", "final_test_acc": accs[-1], "final_test_loss": 2.1 - accs[-1],
            "best_test_acc": max(accs), "best_epoch": int(np.argmax(accs)) + 1, "epochs": len(accs),
            "total_seconds": 4.5, "parameters": 78042,
        }))  # fmt: skip


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    """A sweep folder: study.json from the real planner, run folders fabricated per FINALS."""
    study = parse_study(STUDY, "fabricated.toml")
    root = tmp_path / "sweep"
    runs = plan(study, root)
    write_study_json(root, study, runs, {})
    for run in runs:
        final = FINALS[run.name][run.seed]
        if final is not None:
            write_run(run.folder, run.config, [final - 0.2, final - 0.05, final])
        elif run.name == "gaaf_relu-shape=none" and run.seed == 1:  # interrupted after 2 of 3 epochs
            write_run(run.folder, run.config, [0.4, 0.5], finished=False)
        elif run.name == "gaaf_relu-round" and run.seed == 0:  # failed
            run.folder.mkdir(parents=True)
            (run.folder / "error.txt").write_text("command: ...\nexit status 1\n\nRuntimeError: boom\n")
        # everything else: missing (no folder at all)
    return root


def test_report_table_statistics_and_files(sweep_dir: Path):
    report = build_report(sweep_dir)
    out = sweep_dir / "report"
    names = {p.name for p in report.files}
    assert {"report.md", "report.csv", "runs.csv", "acc_vs_shift.png", "learning_curves.png"} <= names
    for p in report.files:
        assert p.is_file() and p.stat().st_size > 0
    lines = report.table_markdown.splitlines()
    assert lines[0].startswith("| run | dataset | model | activation | shift | train images | test images | epochs "
                               "| acc | published |")
    assert lines[0].rstrip().endswith("| preset | optimizer | lr | batch size | augment |")
    rows = {ln.split(" | ")[0].strip("| "): [c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]}
    relu = rows["relu"]
    assert relu[1:8] == ["cifar10", "resnet8_v1", "relu", "-", "50,000 (all)", "10,000 (all)", "3"]
    s = stats.summarize(FINALS["relu"])
    assert relu[8] == f"{s.mean:.4f} ± {s.std:.4f} (n=3)"
    assert relu[9] == "0.8084 (seed; full data, 200 epochs)" and relu[10] == "baseline"
    assert relu[11:15] == ["—", "—", "—", "—"] and relu[15:] == ["seed", "adam", "0.001", "128", "none"]

    # every seed of these runs has its baseline partner: paired (Welch before pairing existed). FINALS
    # moves each seed by exactly the same amount (−0.01, −0.1): the per-seed differences have no spread,
    # so there is no test and no p (never "worse, p = 0")
    g1 = rows["gaaf_relu-shift=-1"]
    assert g1[3:5] == ["gaaf_relu", "-1"]
    assert g1[10:15] == ["-0.0100 (no spread)", "no spread: cannot test", "—", "—", "—"]
    assert rows["gaaf_relu-shift=2"][10:15] == ["-0.1000 (no spread)", "no spread: cannot test", "—", "—", "—"]
    none = rows["gaaf_relu-shape=none"]
    assert none[4] == "no s(x)" and none[11] == "n too small" and "[2 of 3 not finished]" in none[8]
    # one finished seed (seed 0) with its partner: Δ shown, marked as untested
    assert none[10] == f"{0.66 - 0.80:+.4f} (n=1, no test)" and none[14] == "—"  # no test ran: the table says none
    rnd = rows["gaaf_relu-round"]
    assert rnd[3:5] == ["gaaf_relu(round)", "-1"] and rnd[8].startswith("—")

    # the partial sweep is listed, not fatal
    assert "`gaaf_relu-shape=none/seed1`: interrupted after 2 epochs" in report.problems_markdown
    assert "`gaaf_relu-shape=none/seed2`: missing" in report.problems_markdown
    assert "`gaaf_relu-round/seed0`: failed: RuntimeError: boom" in report.problems_markdown
    md = (out / "report.md").read_text()
    assert report.table_markdown in md and "![Learning curves](learning_curves.png)" in md
    assert "Welch" in md and "k = 0 comparisons" in md  # nothing here could be tested
    assert "## Time to target" in md

    with open(out / "report.csv", newline="") as f:
        per_seed = list(csv.DictReader(f))
    assert len(per_seed) == 15
    relu_raw = [float(r["final_test_acc"]) for r in per_seed if r["run"] == "relu"]
    assert relu_raw == FINALS["relu"]
    assert [r["state"] for r in per_seed if r["run"] == "gaaf_relu-round"] == ["failed", "missing", "missing"]
    with open(out / "runs.csv", newline="") as f:
        per_run = {r["run"]: r for r in csv.DictReader(f)}
    g2 = per_run["gaaf_relu-shift=2"]
    assert (g2["test"], g2["verdict"], g2["p"], g2["p_adj"], g2["ci_high"]) == ("paired", "no spread: cannot test", "", "",
                                                                                "")  # fmt: skip
    assert float(g2["diff"]) == pytest.approx(-0.1)
    # time to target 0.805 (relu's mean): relu's seeds reach it at epochs never, 3, 3 (0.80 < 0.805);
    # the GAAF runs never do (counted as epochs + 1 = 4)
    assert per_run["relu"]["target_reached"] == "2 of 3" and float(per_run["relu"]["epochs_to_target"]) == pytest.approx(
        (4 + 3 + 3) / 3)  # fmt: skip
    assert per_run["gaaf_relu-shift=2"]["target_reached"] == "0 of 3"
    assert float(g2["target_diff"]) == pytest.approx(4 - 10 / 3) and g2["target_test"] == "paired"
    assert [r["epochs_to_target"] for r in per_seed if r["run"] == "relu"] == ["never", "3", "3"]


def test_report_cli_prints_table_and_writes_elsewhere(sweep_dir: Path, tmp_path: Path, capsys):
    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "| run | dataset | model |" in out and "Not finished (5 run folders)" in out
    assert (tmp_path / "rep" / "report.md").is_file()


def test_report_without_study_json(sweep_dir: Path):
    (sweep_dir / "study.json").unlink()
    report = build_report(sweep_dir, plots=False)
    assert [r.name for r in report.rows] == sorted(FINALS)
    assert all(r.comparison is None for r in report.rows)  # no baseline known


def test_report_on_an_empty_folder_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no study.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_describe_activation_reads_defaults_from_the_activation():
    assert describe_activation({"activation": "relu"}) == ("relu", "-")
    assert describe_activation({"activation": "gaaf_relu"}) == ("gaaf_relu", "4")  # the preset's shift
    assert describe_activation({"activation": "gaaf_tanh"}) == ("gaaf_tanh", "gaussian(center=0, width=3)")
    surrogate = {"activation": "gaaf_relu", "variant": "surrogate", "shift": -1.0}
    assert describe_activation(surrogate) == ("gaaf_relu(surrogate)", "-1")


def test_folder_states(tmp_path: Path):
    assert folders.state(tmp_path / "x") == folders.MISSING
    write_run(tmp_path / "a", {}, [0.5], finished=False)
    assert folders.state(tmp_path / "a") == folders.INTERRUPTED and folders.epochs_done(tmp_path / "a") == 1
    (tmp_path / "a" / "error.txt").write_text("x")
    assert folders.state(tmp_path / "a") == folders.FAILED
    write_run(tmp_path / "a", {}, [0.5, 0.6])
    assert folders.state(tmp_path / "a") == folders.FINISHED  # a finished run wins over an old error.txt


def test_acc_vs_shift_frame_shows_reference_lines_and_widens_a_single_shift() -> None:
    """Baselines are horizontal lines, which matplotlib leaves out of autoscaling: the frame takes
    them in with a margin; one shift value gets a 2-wide x axis instead of ±0.05."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from gaaf.plots.report import _frame

    ax = Figure().add_subplot()
    ax.plot([-1.0], [0.47], marker="o")
    ax.axhline(0.459)
    ax.axhline(0.8084)
    _frame(ax, [0.459, 0.8084], [-1.0])
    lo, hi = ax.get_ylim()
    assert lo < 0.459 - 0.01 and hi > 0.8084 + 0.01
    assert ax.get_xlim() == (-2.0, 0.0)
    ax2 = Figure().add_subplot()
    ax2.plot([-1.0, 1.0], [0.5, 0.6])
    before = ax2.get_xlim()
    _frame(ax2, [], [-1.0, 1.0])
    assert ax2.get_xlim() == before  # several shifts: autoscaled x axis kept


def test_report_figures_draw_the_runs(sweep_dir: Path, saved_figures):
    """What the two report figures show, from FINALS (each run's seeds end at final − 0.2,
    final − 0.05, final): means and sample standard deviations worked out by hand."""
    from figures_capture import data_axes, hlines, legend_texts, line

    build_report(sweep_dir)
    assert sorted(saved_figures.names()) == ["acc_vs_shift.png", "learning_curves.png"]

    (ax,) = data_axes(saved_figures["acc_vs_shift.png"])
    # the title's second line: what our runs were trained on (3 of the published 200 epochs)
    assert ax.get_title() == "fabricated\nours: 50,000 (all) training images, 10,000 (all) test images, 3 epochs"
    assert ax.get_ylabel() == "final test accuracy"
    assert ax.get_xlabel().startswith("shift of the sigmoid shape")
    # one series for the shifted gaaf_relu runs (the round variant finished nothing and has no
    # published number: no points); shape=none is a flat reference line; so are both baselines
    published_as = "published: full data, 200 epochs, single run"  # the seed's setting
    assert sorted(legend_texts(saved_figures["acc_vs_shift.png"])) == sorted([  # below the axes: the figure's
        "gaaf_relu (ours, mean ± std)", f"gaaf_relu ({published_as})", "baseline relu (ours): mean ± std (n=3)",
        f"baseline relu ({published_as})", "gaaf_relu-shape=none (ours)",
    ])  # fmt: skip
    (ours,) = [c for c in ax.containers if c.get_label() == "gaaf_relu (ours, mean ± std)"]
    data_line, _, (bars,) = ours.lines
    np.testing.assert_allclose(data_line.get_xydata(), [[-1.0, 0.795], [2.0, 0.705]], atol=1e-12)
    # std of (x − 0.005, x + 0.005, x) is 0.005: bars from mean − 0.005 to mean + 0.005
    np.testing.assert_allclose(np.array(bars.get_segments()), [[[-1.0, 0.790], [-1.0, 0.800]],
                                                               [[2.0, 0.700], [2.0, 0.710]]], atol=1e-12)  # fmt: skip
    published = line(ax, f"gaaf_relu ({published_as})")
    np.testing.assert_allclose(published.get_xydata(), [[-1.0, 0.7948], [2.0, 0.7441]])
    assert published.get_marker() == "x"
    assert line(ax, "baseline relu (ours): mean ± std (n=3)").get_ydata()[0] == pytest.approx(0.805)
    assert line(ax, f"baseline relu ({published_as})").get_ydata()[0] == 0.8084
    assert line(ax, "gaaf_relu-shape=none (ours)").get_ydata()[0] == pytest.approx(0.66)  # its one finished seed
    assert len(hlines(ax)) == 3
    (band,) = ax.patches  # the baseline's mean ± std
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((0.800, 0.810))
    lo, hi = ax.get_ylim()
    assert lo < 0.66 and hi > 0.8084  # every reference line is inside the frame

    (ax,) = data_axes(saved_figures["learning_curves.png"])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "test accuracy")
    assert legend_texts(ax) == ["relu (n=3)", "gaaf_relu-shift=-1 (n=3)", "gaaf_relu-shift=2 (n=3)",
                                "gaaf_relu-shape=none (n=2)"]  # the round variant has no epoch at all
    curves = {  # label: (mean per epoch 1..3, each seed's curve)
        "relu (n=3)": ([0.605, 0.755, 0.805], [[0.60, 0.75, 0.80], [0.61, 0.76, 0.81], [0.605, 0.755, 0.805]]),
        "gaaf_relu-shift=-1 (n=3)": ([0.595, 0.745, 0.795],
                                     [[0.59, 0.74, 0.79], [0.60, 0.75, 0.80], [0.595, 0.745, 0.795]]),
        "gaaf_relu-shift=2 (n=3)": ([0.505, 0.655, 0.705],
                                    [[0.50, 0.65, 0.70], [0.51, 0.66, 0.71], [0.505, 0.655, 0.705]]),
        # seed 1 was interrupted after two epochs: its curve stops there, epoch 3's mean is seed 0 alone
        "gaaf_relu-shape=none (n=2)": ([0.43, 0.555, 0.66], [[0.46, 0.61, 0.66], [0.4, 0.5]]),
    }
    for label, (means, seeds) in curves.items():
        thick = line(ax, label)
        np.testing.assert_allclose(thick.get_xydata(), np.column_stack([[1, 2, 3], means]), atol=1e-12)
        thin = [ln for ln in ax.get_lines() if ln.get_label().startswith("_") and ln.get_color() == thick.get_color()]
        assert all(ln.get_linewidth() < thick.get_linewidth() for ln in thin)
        assert len(thin) == len(seeds), label
        for ln, ys in zip(thin, seeds):
            np.testing.assert_allclose(ln.get_xydata(), np.column_stack([range(1, len(ys) + 1), ys]), atol=1e-12)

    # one colour per arm in both figures: the baseline black, the shifted series' colour shaded by
    # shift (light to dark), the run without s(x) red as its reference line
    from matplotlib.colors import to_rgb
    acc_ax, = data_axes(saved_figures["acc_vs_shift.png"])
    colour = {lab: to_rgb(line(ax, lab).get_color()) for lab in curves}
    assert colour["relu (n=3)"] == to_rgb(line(acc_ax, "baseline relu (ours): mean ± std (n=3)").get_color())
    assert colour["relu (n=3)"] == to_rgb("black")
    assert colour["gaaf_relu-shape=none (n=2)"] == to_rgb(line(acc_ax, "gaaf_relu-shape=none (ours)").get_color())
    series = to_rgb(data_line.get_color())  # the gaaf_relu series' points in acc_vs_shift
    light, dark = colour["gaaf_relu-shift=-1 (n=3)"], colour["gaaf_relu-shift=2 (n=3)"]
    assert sum(light) > sum(series) > sum(dark)  # shift −1 lighter than the series colour, shift 2 darker
    assert len(set(colour.values())) == len(colour)


def test_acc_vs_shift_is_left_out_without_shifted_gaaf_runs(sweep_dir: Path, saved_figures):
    from gaaf.experiments.report import load_rows
    from gaaf.plots.report import plot_acc_vs_shift

    study, rows = load_rows(sweep_dir)
    no_shift = [r for r in rows if r.name in ("relu", "gaaf_relu-shape=none")]
    assert plot_acc_vs_shift(study, no_shift, sweep_dir / "x.png") is None
    assert len(saved_figures) == 0 and not (sweep_dir / "x.png").exists()


def test_arm_colors_follow_the_series_and_the_shift(sweep_dir: Path):
    from matplotlib.colors import to_rgb

    from gaaf.experiments.report import load_rows
    from gaaf.plots.arm_colors import arm_colors, series_colors, shades

    study, rows = load_rows(sweep_dir)
    colors = arm_colors(rows, study.baseline)
    assert set(colors) == {r.name for r in rows}
    assert colors["relu"] == to_rgb("black")
    assert colors["gaaf_relu-shape=none"] == to_rgb("tab:red")  # the one run without s(x): red itself
    assert len(set(colors.values())) == len(colors)  # every arm its own colour
    assert colors == arm_colors(list(reversed(rows)), study.baseline)  # not by position in the list
    assert arm_colors(rows, None)["relu"] != to_rgb("black")  # without a baseline relu is just another arm
    assert series_colors(["b", "a", "b"]) == {"a": "tab:blue", "b": "tab:orange"}
    five = shades("tab:blue", 5)
    assert shades("tab:blue", 1) == [to_rgb("tab:blue")] and five[2] != to_rgb("tab:blue")
    assert all(sum(a) > sum(b) for a, b in zip(five, five[1:]))  # light to dark
    assert all(0.0 <= c <= 1.0 for rgb in five for c in rgb)
