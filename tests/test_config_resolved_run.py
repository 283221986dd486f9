"""A real tiny `gaaf train` of gaaf_relu on fake CIFAR-10: config.json records the activation's
resolved values, and a run written before they were recorded (None in config.json and last.pt's
config, fabricated by editing them) still resumes, and is then recorded resolved."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from data_fakes import write_fake_cifar10
from gaaf.cli import main

ACT_FIELDS = ("shape", "shift", "slope", "center", "width", "frequency", "variant")


def _flags(data_dir: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--model", "mlp", "--hidden", "8", "--activation", "gaaf_relu", "--epochs", str(epochs),
            "--batch-size", "16", "--limit-train", "32", "--limit-test", "16", "--l2", "0", "--data-dir",
            str(data_dir), "--no-download", "--device", "cpu", "--out", str(out), "--quiet"]


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def test_config_json_holds_the_resolved_activation_and_old_null_runs_resume(tmp_path: Path, capsys):
    data_dir = write_fake_cifar10(tmp_path / "data", n_train=32, n_test=16, seed=0)
    run = tmp_path / "run"
    assert main(_flags(data_dir, run, 1)) == 0
    resolved = {k: _config(run)[k] for k in ACT_FIELDS}
    assert resolved == dict(shape="sigmoid", shift=4.0, slope=1.0, center=None, width=None,
                            frequency=10000.0, variant="floor")
    assert _config(run)["stem_activation"] is None and _config(run)["hidden"] == [8]

    _as_old_gaaf_wrote_it(run)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0, capsys.readouterr().err
    assert {k: _config(run)[k] for k in ACT_FIELDS} == resolved  # rewritten as it ran
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    _as_old_gaaf_wrote_it(run)  # the same flags again (as a torchrun restart gives them) match it too
    assert main([*_flags(data_dir, run, 3), "--resume"]) == 0, capsys.readouterr().err


def _as_old_gaaf_wrote_it(run: Path) -> None:
    """None for every activation parameter left at its default, in config.json and in last.pt."""
    nulls = {k: None for k in ACT_FIELDS}
    stored = json.loads((run / "config.json").read_text())
    stored["config"].update(nulls)
    (run / "config.json").write_text(json.dumps(stored))
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["config"].update(nulls)
    torch.save(ckpt, run / "last.pt")
