"""A study trained with `probe = true` gets the probe plots (GAAF vs baseline, per layer) in its report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from figures_capture import data_axes
from gaaf.cli import main


def test_sweep_with_probes_reports_probe_plots(tmp_path: Path, fake_cifar10_dir: Path, capsys, saved_figures):
    study = tmp_path / "probe.toml"
    study.write_text(f"""title = "probes"
seeds = [0]
baseline = "relu"

[base]
model = "mlp"
hidden = [16, 16]
dataset = "cifar10"
data_dir = "{fake_cifar10_dir}"
download = false
device = "cpu"
epochs = 2
batch_size = 16
limit_train = 48
limit_test = 16
probe = true

[[runs]]  # listed before the baseline: the report still puts the baseline's probe panel first
name = "gaaf"
activation = "gaaf_relu"
shift = -1.0

[[runs]]
name = "relu"
activation = "relu"
""")
    out = tmp_path / "out"
    assert main(["sweep", str(study), "--out", str(out)]) == 0
    probes = {}
    for name in ("relu", "gaaf"):
        probes[name] = json.loads((out / "runs" / name / "seed0" / "probes.json").read_text())
        assert [e["epoch"] for e in probes[name]["epochs"]] == [1, 2]
        assert len(probes[name]["sites"]) == 2  # one per hidden layer of the MLP
    assert main(["report", str(out)]) == 0
    # the baseline's panel first, then GAAF's, each drawing its own run's saturation per layer
    panels = data_axes(saved_figures["probe_saturation.png"])
    assert [ax.get_title() for ax in panels] == ["relu, seed 0", "gaaf, seed 0"]  # the seed shown
    for ax, name in zip(panels, ("relu", "gaaf")):
        d = probes[name]
        for ln, site in zip(ax.get_lines(), d["sites"], strict=True):
            expected = [[e["epoch"], e["per_site"][site]["saturation"]] for e in d["epochs"]]
            np.testing.assert_allclose(ln.get_xydata(), expected)
    assert [ax.get_title() for ax in data_axes(saved_figures["probe_hist.png"])] == [
        f"layer {i}: {site}" for i, site in enumerate(probes["relu"]["sites"])]
    assert [len(ax.patches) for ax in data_axes(saved_figures["probe_hist.png"])] == [2, 2]  # both runs per layer
    report_dir = out / "report"
    for png in ("probe_saturation.png", "probe_grad.png", "probe_hist.png"):
        data = (report_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report_dir / "report.md").read_text()
    assert "![Probes: fraction of activation inputs in the saturation area](probe_saturation.png)" in md
