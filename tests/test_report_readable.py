"""What a researcher trips over in a report (issue K 1, 9): the report says what was trained (images,
epochs, recipe) beside what the published numbers were trained on, warns when they are not comparable,
says "nothing to report yet" (exit 1) on a sweep with nothing finished, and its figures explain
themselves: the baseline band is in the legend, probe figures name the seed and the layers, and the
histogram legend lies inside the figure."""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch

from gaaf.cli import main
from gaaf.experiments import settings, stats
from gaaf.experiments.report import NothingToReport
from gaaf.experiments.study import parse_study
from gaaf.experiments.sweep import plan, write_study_json
from gaaf.models import build_model
from gaaf.plots import probes as probe_plots
from gaaf.plots import report as report_plots
from gaaf.plots.report import build_report
from gaaf.train.probes import ActivationProbe
from test_report import write_run

SUBSET_STUDY = """
title = "subset"
seeds = [0, 1, 2]
baseline = "relu"

[base]
model = "resnet8_v1"
epochs = 1
limit_train = 256
limit_test = 100

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
"""
FINALS = {"relu": [0.20, 0.22, 0.21], "gaaf_relu-shift=-1": [0.19, 0.21, 0.20]}
WARNING = ("**Warning:** these runs use 256 of 50,000 training images, 1 of 200 epochs and 100 of 10,000 "
           "test images: not comparable with the published column.")  # fmt: skip


def make_sweep(root: Path, text: str, finals: "dict[str, list[float | None]]") -> list:
    """A sweep folder planned from `text`; each run × seed with a final accuracy gets a finished folder."""
    study = parse_study(text, "study.toml")
    runs = plan(study, root)
    write_study_json(root, study, runs, {})
    for run in runs:
        final = finals.get(run.name, [None] * 9)[run.seed]
        if final is not None:
            write_run(run.folder, run.config, [final - 0.05, final])
    return runs


def table(md: str) -> list[list[str]]:
    """The cells of the first Markdown table in `md` (header first, the --- line dropped)."""
    all_lines = md.splitlines()
    start = next(i for i, ln in enumerate(all_lines) if ln.startswith("| "))
    end = next((i for i in range(start, len(all_lines)) if not all_lines[i].startswith("|")), len(all_lines))
    lines = [ln for ln in all_lines[start:end] if ln.startswith("| ")]  # the first table only (not time to target)
    return [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]


def test_report_says_what_was_trained_and_warns_against_the_published_setting(tmp_path: Path):
    root = tmp_path / "sweep"
    make_sweep(root, SUBSET_STUDY, FINALS)
    report = build_report(root, plots=False)
    md = (root / "report" / "report.md").read_text()
    lines = md.splitlines()
    head = lines.index(next(ln for ln in lines if ln.startswith("| run |")))
    assert lines[head - 2] == WARNING  # the line right above the table
    assert ("**Trained on:** cifar10, 256 of 50,000 training images, 100 of 10,000 test images, 1 epoch, "
            "preset seed, optimizer adam, lr 0.001, batch size 128, no augmentation.") in md  # fmt: skip
    assert "Differs between runs" not in md
    cells = table(md)
    header, rows = cells[0], {r[0]: dict(zip(cells[0], r)) for r in cells[1:]}
    assert header[:8] == ["run", "dataset", "model", "activation", "shift", "train images", "test images", "epochs"]
    assert header[-5:] == ["preset", "optimizer", "lr", "batch size", "augment"]
    relu = rows["relu"]
    assert (relu["train images"], relu["test images"], relu["epochs"]) == ("256 of 50,000", "100 of 10,000", "1")
    assert relu["published"] == "0.8084 (seed; full data, 200 epochs)"
    assert (relu["preset"], relu["optimizer"], relu["lr"], relu["batch size"], relu["augment"]) == (
        "seed", "adam", "0.001", "128", "none")  # fmt: skip
    assert relu["acc"] == stats.summarize(FINALS["relu"]).format()  # the statistics are untouched
    # the note mapping our column names to the seed's table
    assert "run = num, dataset = data, model = backbone, epochs = steps" in md
    assert report.settings_markdown.endswith(WARNING)

    with open(root / "report" / "report.csv", newline="") as f:
        per_seed = list(csv.DictReader(f))
    assert len(per_seed) == 6
    for r in per_seed:
        assert (r["dataset"], r["train_images"], r["train_images_total"], r["test_images"], r["test_images_total"],
                r["epochs"], r["preset"], r["optimizer"], r["lr"], r["batch_size"], r["augment"]) == (
            "cifar10", "256", "50000", "100", "10000", "1", "seed", "adam", "0.001", "128", "none")  # fmt: skip
        assert r["published_setting"] == "full data, 200 epochs"
    with open(root / "report" / "runs.csv", newline="") as f:
        per_run = {r["run"]: r for r in csv.DictReader(f)}
    assert per_run["relu"]["train_images"] == "256" and per_run["relu"]["epochs"] == "1"
    assert per_run["gaaf_relu-shift=-1"]["published_setting"] == "full data, 200 epochs"


def test_the_cli_prints_the_settings_and_the_warning_above_the_table(tmp_path: Path, capsys):
    make_sweep(tmp_path / "sweep", SUBSET_STUDY, FINALS)
    assert main(["report", str(tmp_path / "sweep"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.index("**Trained on:**") < out.index(WARNING) < out.index("| run | dataset | model |")


def test_settings_that_differ_are_named_and_shown_per_row(tmp_path: Path):
    # relu: 256 images, 1 epoch; gaaf: 1,000 images, 200 epochs; paper-full: all images, 3 epochs
    text = SUBSET_STUDY.replace("limit_test = 100\n", "").replace("shift = -1.0\n", "shift = -1.0\nepochs = 200\n"
                                                                  "limit_train = 1000\n")  # fmt: skip
    text = text.replace("limit_train = 256\n", "").replace('name = "relu"\n', 'name = "relu"\nlimit_train = 256\n')
    text += ('\n[[runs]]\nname = "paper-full"\nactivation = "relu"\nepochs = 3\n'
             'published = 0.9\npublished_source = "paper"\n')
    root = tmp_path / "sweep"
    make_sweep(root, text, {**FINALS, "paper-full": [0.5, 0.6, 0.55]})
    md = build_report(root, plots=False).settings_markdown
    assert "**Trained on:** cifar10, 10,000 (all) test images, preset seed," in md
    assert "**Differs between runs** (see each row): train images, epochs." in md
    # the paper states no epochs: a full-data run with 3 epochs is not flagged against it
    assert md.endswith("**Warning:** `relu` uses 256 of 50,000 training images and 1 of 200 epochs; "
                       "`gaaf_relu-shift=-1` uses 1,000 of 50,000 training images: not comparable with the "
                       "published column.")  # fmt: skip
    rows = {r[0]: r for r in table((root / "report" / "report.md").read_text())[1:]}
    assert rows["paper-full"][5:8] == ["50,000 (all)", "10,000 (all)", "3"]
    assert rows["paper-full"][9] == "0.9000 (paper; full data)"
    assert rows["gaaf_relu-shift=-1"][5:8] == ["1,000 of 50,000", "10,000 (all)", "200"]


def test_the_images_a_run_loaded_are_the_images_used(tmp_path: Path):
    """A run's summary.json records what it loaded: a data directory holding fewer images than the
    official split (no limit set) reads as the subset it was, in the table, both CSVs and the warning."""
    text = SUBSET_STUDY.replace("limit_train = 256\n", "").replace("limit_test = 100\n", "")
    root = tmp_path / "sweep"
    runs = make_sweep(root, text, FINALS)
    for run in runs:  # every seed of every arm loaded 5,000 of the training images and all test images
        summary_path = run.folder / "summary.json"
        summary = json.loads(summary_path.read_text())
        summary_path.write_text(json.dumps({**summary, "train_images": 5000, "test_images": 10000}))
    report = build_report(root, plots=False)
    assert "**Trained on:** cifar10, 5,000 of 50,000 training images, 10,000 (all) test images," in report.settings_markdown
    assert report.settings_markdown.endswith("**Warning:** these runs use 5,000 of 50,000 training images and 1 of "
                                             "200 epochs: not comparable with the published column.")
    rows = {r[0]: r for r in table((root / "report" / "report.md").read_text())[1:]}
    assert rows["relu"][5:7] == ["5,000 of 50,000", "10,000 (all)"]
    for name in ("report.csv", "runs.csv"):
        with open(root / "report" / name, newline="") as f:
            assert {(r["train_images"], r["train_images_total"]) for r in csv.DictReader(f)} == {("5000", "50000")}
    # seeds that disagree: the row falls back to the config's setting (the whole split)
    first = runs[0].folder / "summary.json"
    first.write_text(json.dumps({**json.loads(first.read_text()), "train_images": 4000}))
    build_report(root, plots=False)
    rows = {r[0]: r for r in table((root / "report" / "report.md").read_text())[1:]}
    assert rows[runs[0].name][5] == "50,000 (all)" and rows[runs[-1].name][5] == "5,000 of 50,000"


def test_setting_of_takes_the_loaded_counts_from_a_summary():
    config = {"dataset": "cifar10", "epochs": 200, "limit_train": 1000}
    assert settings.setting_of(config, {"train_images": 800, "test_images": 10_000}).train == settings.Images(800, 50_000)
    more = settings.setting_of(config, {"train_images": 60_000})  # more than the official split: total unknown
    assert more.train == settings.Images(60_000, None) and settings.images_cell(more.train) == "60,000"
    for bad in (None, {}, {"train_images": True}, {"train_images": -1}, {"train_images": "800"}, {"train_images": [800]}):
        assert settings.setting_of(config, bad).train == settings.Images(1000, 50_000)  # the config's limit


def test_no_warning_when_the_runs_match_the_published_setting():
    full = settings.setting_of({"dataset": "cifar10", "epochs": 200, "limit_train": None, "augment": []})
    assert settings.comparability_warning([("relu", full, "seed")]) == ""
    assert settings.shortfall(full, "seed") == ""
    big = settings.setting_of({"dataset": "mnist", "epochs": 5, "limit_train": 10**9})  # more than the split
    assert big.train == settings.Images(60_000, 60_000) and settings.images_cell(big.train) == "60,000 (all)"
    assert settings.shortfall(big, "paper") == ""  # the paper states no epochs
    unknown = settings.setting_of({"dataset": "imagenet", "limit_train": 10})
    assert settings.images_cell(unknown.train) == "10" and settings.images_cell(unknown.test) == "?"


def test_nothing_finished_says_so_in_one_line_and_exits_1(tmp_path: Path, capsys):
    root = tmp_path / "sweep"
    runs = make_sweep(root, SUBSET_STUDY, {})
    write_run(runs[0].folder, runs[0].config, [0.1], finished=False)  # interrupted
    runs[1].folder.mkdir(parents=True)
    (runs[1].folder / "error.txt").write_text("RuntimeError: boom\n")  # failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib "no artists with labels" either
        assert main(["report", str(root)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"gaaf report: nothing to report yet: none of the 6 run folders under {root} "
                                   "has finished (1 interrupted, 1 failed, 4 missing)")  # fmt: skip
    assert not (root / "report").exists()  # nothing written
    with pytest.raises(NothingToReport):
        build_report(root)


# ---------------------------------------------------------------------------------------------
# figures: each Figure as it is saved


@pytest.fixture
def saved(monkeypatch) -> dict:
    """{file name: Figure} of every figure the report modules save (then saved as usual)."""
    figures: dict = {}

    def capture(real):
        def save(fig, path, *args, **kwargs):
            figures[Path(path).name] = fig
            return real(fig, path, *args, **kwargs)

        return save

    monkeypatch.setattr(report_plots, "save_figure", capture(report_plots.save_figure))
    monkeypatch.setattr(probe_plots, "save_figure", capture(probe_plots.save_figure))
    return figures


def _write_probes(folder: Path, activation: str, params: dict) -> list[str]:
    """A real probes.json from three 'epochs' of an MLP (8-8 hidden) on random data; its site names."""
    torch.manual_seed(0)
    model = build_model("mlp", 10, (1, 4, 4), activation, params, hidden=[8, 8])
    probe = ActivationProbe(model, every=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in (1, 2, 3):
        x, y = torch.randn(6, 1, 4, 4), torch.randint(0, 10, (6,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        probe.end_epoch(epoch)
    probe.write(folder / "probes.json")
    return [name for name, _ in probe.sites]


def test_acc_vs_shift_explains_the_band_and_the_published_setting(tmp_path: Path, saved: dict):
    root = tmp_path / "sweep"
    make_sweep(root, SUBSET_STUDY, FINALS)
    build_report(root)
    fig = saved["acc_vs_shift.png"]
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    s = stats.summarize(FINALS["relu"])
    assert "baseline relu (ours): mean ± std (n=3)" in texts
    assert "gaaf_relu (published: full data, 200 epochs, single run)" in texts
    ax = fig.axes[0]
    spans = [p.get_extents().transformed(ax.transData.inverted()) for p in ax.patches]
    assert any(b.y0 == pytest.approx(s.mean - s.std) and b.y1 == pytest.approx(s.mean + s.std) for b in spans)
    assert "ours: 256 of 50,000 training images, 100 of 10,000 test images, 1 epoch" in ax.get_title()


def test_probe_figures_name_the_seed_and_the_layers(tmp_path: Path, saved: dict):
    root = tmp_path / "sweep"
    runs = make_sweep(root, SUBSET_STUDY, FINALS)
    folder = {(r.name, r.seed): r.folder for r in runs}
    sites = _write_probes(folder["relu", 1], "relu", {})  # seed 0 has none: seed 1 is shown
    _write_probes(folder["gaaf_relu-shift=-1", 0], "gaaf_relu", {"shift": -1.0})
    build_report(root)
    names = [f"{i} {site}" for i, site in enumerate(sites)]
    for png in ("probe_saturation.png", "probe_grad.png", "probe_hist.png"):
        suptitle = saved[png].get_suptitle()
        assert "relu, seed 1" in suptitle and "gaaf_relu-shift=-1, seed 0" in suptitle, png
    for png in ("probe_saturation.png", "probe_grad.png"):
        fig = saved[png]
        assert [ax.get_title() for ax in fig.axes[:2]] == ["relu, seed 1", "gaaf_relu-shift=-1, seed 0"]
        bar = fig.axes[-1]  # the colour bar: layer index and name at each tick
        assert [t.get_text() for t in bar.get_yticklabels()] == names
    hist = saved["probe_hist.png"]
    assert [ax.get_title() for ax in hist.axes] == [f"layer {i}: {site}" for i, site in enumerate(sites)]
    texts = [t.get_text() for t in hist.legends[0].get_texts()]
    assert texts == ["relu, seed 1 (epoch 3)", "gaaf_relu-shift=-1, seed 0 (epoch 3)", "saturation threshold"]


@pytest.mark.parametrize("layers", [1, 2])
def test_histogram_legend_lies_inside_the_figure(tmp_path: Path, layers: int):
    """Long run labels in a narrow figure (one panel): the old legend ran off both sides."""
    data = {}
    long_labels = (("relu-with-a-long-name, seed 0", "relu", {}),
                   ("gaaf_relu-shift=-1-with-a-long-name, seed 2", "gaaf_relu", {"shift": -1.0}))  # fmt: skip
    for label, act, params in long_labels:
        _write_probes(tmp_path / label, act, params)
        data[label] = probe_plots.load_probes(tmp_path / label)
    fig = probe_plots.probe_figures(data, layers)["probe_hist.png"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    canvas = fig.bbox
    assert canvas.x0 <= legend.x0 and legend.x1 <= canvas.x1 and canvas.y0 <= legend.y0 and legend.y1 <= canvas.y1
    for ax in fig.axes:  # and it covers no panel
        assert not legend.overlaps(ax.get_tightbbox(renderer))
