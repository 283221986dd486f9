"""A study trained with `probe = true` gets the probe plots (GAAF vs baseline, per layer) in its report."""
from __future__ import annotations

import json
from pathlib import Path

from gaaf.cli import main


def test_sweep_with_probes_reports_probe_plots(tmp_path: Path, fake_cifar10_dir: Path, capsys):
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

[[runs]]
name = "relu"
activation = "relu"

[[runs]]
name = "gaaf"
activation = "gaaf_relu"
shift = -1.0
""")
    out = tmp_path / "out"
    assert main(["sweep", str(study), "--out", str(out)]) == 0
    for name in ("relu", "gaaf"):
        probes = json.loads((out / "runs" / name / "seed0" / "probes.json").read_text())
        assert [e["epoch"] for e in probes["epochs"]] == [1, 2]
        assert len(probes["sites"]) == 2  # one per hidden layer of the MLP
    assert main(["report", str(out)]) == 0
    report_dir = out / "report"
    for png in ("probe_saturation.png", "probe_grad.png", "probe_hist.png"):
        data = (report_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report_dir / "report.md").read_text()
    assert "![Probes: fraction of activation inputs in the saturation area](probe_saturation.png)" in md
