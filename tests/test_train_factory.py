"""`gaaf train --model pkg.module:factory`: a user's model factory, from a module in a folder on
sys.path / PYTHONPATH, trained through the same engine (its activations replaced by --activation
through gaaf.convert), reproduced from its config.json, evaluated, swept and reported; and the
one-line errors for factories that cannot be imported, called or converted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from data_fakes import write_fake_cifar10
from gaaf.cli import main
from gaaf.train import resolve_config

ROOT = Path(__file__).resolve().parents[1]

FACTORIES = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self, num_classes, in_shape):
            super().__init__()
            self.conv = nn.Conv2d(in_shape[0], 8, 3, padding=1)
            self.act = nn.ReLU(inplace=True)
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            x = self.act(self.conv(x))
            x = F.relu(F.max_pool2d(x, 2))   # a functional call: converted through torch.fx
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def small_cnn(num_classes, in_shape):
        return SmallCNN(num_classes, in_shape)

    def gelu_mlp(num_classes, in_shape):
        c, h, w = in_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.GELU(), nn.Linear(16, num_classes))

    class Branchy(nn.Module):
        def forward(self, x):
            return F.relu(x) if x.sum() > 0 else torch.tanh(x)

    def untraceable(num_classes, in_shape):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], num_classes), Branchy())

    def linear(num_classes, in_shape):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], num_classes))

    def not_a_module(num_classes, in_shape):
        return 3

    def boom(num_classes, in_shape):
        raise RuntimeError("the factory broke\\nsecond line")

    NOT_CALLABLE = 5
''')


@pytest.fixture
def factories(tmp_path, monkeypatch) -> Path:
    """A module `gaaf_test_models` in its own folder, on sys.path and PYTHONPATH (for child processes)."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "gaaf_test_models.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delitem(sys.modules, "gaaf_test_models", raising=False)
    yield folder
    sys.modules.pop("gaaf_test_models", None)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar10(tmp_path_factory.mktemp("data"), n_train=64, n_test=32, seed=0)


def _flags(data_dir: Path, out: Path) -> list[str]:
    return ["--epochs", "1", "--batch-size", "32", "--data-dir", str(data_dir), "--no-download", "--device", "cpu",
            "--out", str(out), "--quiet"]


def _metrics(run: Path) -> list[list[str]]:
    return [line.split(",")[:6] for line in (run / "metrics.csv").read_text().splitlines()]


def test_a_factory_trains_reproduces_and_evaluates(factories, data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--model", "gaaf_test_models:small_cnn", "--activation", "gaaf_relu", "--shift", "-1"]
    assert main(argv + _flags(data_dir, run)) == 0
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["model"] == "gaaf_test_models:small_cnn" and cfg["activation"] == "gaaf_relu" and cfg["shift"] == -1.0
    state = torch.load(run / "best.pt", weights_only=True)["model"]
    assert sorted(state) == ["conv.bias", "conv.weight", "fc.bias", "fc.weight"]  # GAAF adds no parameters
    again = tmp_path / "again"
    assert main(["train", "--config", str(run / "config.json"), "--out", str(again), "--quiet"]) == 0
    assert _metrics(again) == _metrics(run)  # the saved config reproduces the run
    capsys.readouterr()
    assert main(["eval", str(run / "best.pt"), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 32


def test_activation_means_what_every_site_becomes(factories):
    from gaaf.activations import GAAF
    from gaaf.models import build_model

    model = build_model("gaaf_test_models:small_cnn", 10, (3, 8, 8), "gaaf_relu", {"shift": -1.0})
    gaafs = [m for m in model.modules() if isinstance(m, GAAF)]
    assert len(gaafs) == 2 and all(m.spec.shape_params["shift"] == -1.0 for m in gaafs)
    assert model.gaaf_conversion.ok and "forward" in vars(model)  # the F.relu call rewritten
    plain = build_model("gaaf_test_models:gelu_mlp", 10, (3, 8, 8), "relu")  # the default: plain ReLU everywhere
    assert isinstance(plain[2], torch.nn.ReLU)
    gelu = build_model("gaaf_test_models:gelu_mlp", 10, (3, 8, 8), "gaaf_gelu", {"variant": "surrogate"})
    assert isinstance(gelu[2], GAAF) and gelu[2].spec.base == "gelu" and gelu[2].spec.variant == "surrogate"


@pytest.mark.parametrize("model, extra, message", [
    ("no_such_module_xyz:f", [], "model 'no_such_module_xyz:f': cannot import module 'no_such_module_xyz' "
                                 "(No module named 'no_such_module_xyz'); is its folder on PYTHONPATH?"),
    ("gaaf_test_models:missing", [], "module 'gaaf_test_models' has no attribute 'missing'"),
    ("gaaf_test_models:NOT_CALLABLE", [], "'NOT_CALLABLE' is an object of type int, not a callable factory"),
    ("gaaf_test_models:not_a_module", [], "model factory 'gaaf_test_models:not_a_module' returned an object of type int, not an nn.Module"),
    ("gaaf_test_models:boom", [], "model factory 'gaaf_test_models:boom' failed: RuntimeError: the factory broke"),
    ("gaaf_test_models:linear", [], "has no activation for 'gaaf_relu' to replace"),
    ("gaaf_test_models:untraceable", [], "2 activation(s) cannot become 'gaaf_relu': 2 functional calls in a forward "
                                         "that does not trace: Branchy.forward"),
    ("gaaf_test_models:small_cnn", ["--hidden", "8"], "hidden applies to gaaf's own models (resnet*, mlp), not to "
                                                      "the model factory 'gaaf_test_models:small_cnn'"),
    ("gaaf_test_models:a:b", [], "a model factory is written pkg.module:factory (one colon)"),
])
def test_bad_factories_are_one_line_errors(factories, data_dir, tmp_path, capsys, model, extra, message):
    capsys.readouterr()
    argv = ["train", "--model", model, "--activation", "gaaf_relu", *extra, *_flags(data_dir, tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gaaf: error: invalid training config: ") and message in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_factory_through_the_cli_in_a_subprocess(factories, data_dir, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--model", "gaaf_test_models:gelu_mlp", "--activation", "gaaf_gelu", *_flags(data_dir, run)]
    argv.remove("--quiet")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "gaaf", *argv], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "model gaaf_test_models:gelu_mlp: 1 activation sites converted to gaaf_gelu (gaaf.convert)" in done.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_a_factory_in_a_sweep_and_its_report(factories, data_dir, tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent(f"""\
        title = "factory"
        seeds = [0]
        baseline = "relu"

        [base]
        model = "gaaf_test_models:small_cnn"
        data_dir = "{data_dir}"
        download = false
        device = "cpu"
        epochs = 1
        batch_size = 32

        [[runs]]
        name = "relu"
        activation = "relu"

        [[runs]]
        name = "gaaf"
        activation = "gaaf_relu"
        shift = -1.0
        """))
    out = tmp_path / "sweep"
    assert main(["sweep", str(study), "--out", str(out), "--no-estimate"]) == 0
    configs = sorted(json.loads(p.read_text())["config"]["activation"] for p in out.rglob("config.json"))
    assert configs == ["gaaf_relu", "relu"]
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "gaaf_test_models:small_cnn" in (out / "report" / "report.md").read_text()
