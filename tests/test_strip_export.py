"""gaaf.strip (the base activations back, the output change measured) and gaaf.export_onnx (the
dynamo exporter; the file run in onnxruntime). The export tests skip where onnx, onnxscript or
onnxruntime is missing (the `export` extra; CI installs it)."""
from __future__ import annotations

import copy
from pathlib import Path
import importlib.util

import pytest
import torch
from torch import nn

import gaaf
from convert_models import ResNet, TransformerBlock
from gaaf.activations import GAAF
from gaaf.activations.catalog import BASES
from gaaf.models import build_model

EXPORTER = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
needs_exporter = pytest.mark.skipif(not EXPORTER, reason="needs onnx, onnxscript and onnxruntime (gaaf[export])")


# ---------------------------------------------------------------------- strip
def test_strip_undoes_convert_and_measures_the_change():
    torch.manual_seed(0)
    original = ResNet().eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        want = original(x)
    converted, _ = gaaf.convert(copy.deepcopy(original))
    converted.train()
    stripped, report = gaaf.strip(converted, example=x)
    assert stripped.training  # the mode is restored
    assert not any(isinstance(m, GAAF) for m in stripped.modules())
    assert isinstance(stripped.layer1[0].relu, nn.ReLU)
    with torch.no_grad():
        assert torch.equal(stripped.eval()(x), want)  # the plain network again, bit for bit
    assert len(report.stripped) == 5 and report.bases == {"relu": 5} and report.bound == 0.5 / 1e4
    assert 0 < report.measured < 1e-2
    assert "5 GAAF modules -> their base (relu x5)" in str(report)
    assert f"output moved by {report.measured:.3g} at most on the example" in str(report)


def test_strip_of_gaafs_own_resnet_and_of_shared_and_root_modules():
    torch.manual_seed(0)
    model = build_model("resnet8_v1", 10, (3, 32, 32), "gaaf_tanh")
    model, report = gaaf.strip(model, example=torch.randn(2, 3, 32, 32))
    assert report.bases == {"tanh": 7} and sum(isinstance(m, nn.Tanh) for m in model.modules()) == 7
    act = GAAF("gelu", variant="surrogate")
    shared, report = gaaf.strip(nn.Sequential(nn.Linear(3, 3), act, act), example=torch.randn(2, 3))
    assert shared[1] is shared[2] and isinstance(shared[1], nn.GELU)
    assert report.measured == 0.0 and report.bound == 0.0  # the surrogate's forward is φ itself
    root, report = gaaf.strip(GAAF("elu"))
    assert isinstance(root, nn.ELU) and report.measured is None and "at most 0.5·max s/K = 5e-05" in str(report)


# ---------------------------------------------------------------------- ONNX
class EveryBase(nn.Module):
    """GAAF on every base (variants in turn), each on its own slice of the input."""

    def __init__(self) -> None:
        super().__init__()
        variants = ("floor", "round", "surrogate")
        self.acts = nn.ModuleList(GAAF(b, variant=variants[i % 3]) for i, b in enumerate(BASES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([a(c) for a, c in zip(self.acts, x.chunk(len(self.acts), dim=1))], dim=1)


@pytest.mark.slow
@needs_exporter
def test_onnx_holds_the_gaaf_formula_of_every_base(tmp_path):
    import onnx
    import onnxruntime

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8 * 256, generator=gen) * 6  # the same x in both: the sawtooth's floor is the same
    path = tmp_path / "bases.onnx"
    report = gaaf.export_onnx(EveryBase(), x, path)
    proto = onnx.load(str(path))
    assert {n.domain for n in proto.graph.node} <= {""} and not proto.functions  # standard operators only
    assert {"Floor", "Exp"} <= {n.op_type for n in proto.graph.node}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = EveryBase()(x)
    # float32 rounding of exp, tanh, erfc, ... (a few ulps), no more: x·K and its floor are exact
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-6, atol=1e-6)
    assert report.max_abs_diff is not None and report.checked_batches == (3, 4)
    assert f"wrote {path} (ONNX opset {report.opset}" in str(report) and "batch dimension dynamic" in str(report)


@pytest.mark.slow
@needs_exporter
def test_onnx_of_a_converted_network_and_of_its_stripped_form(tmp_path):
    """Conv → BN → GAAF → mean → Linear: onnxruntime's convolution rounds differently from torch's,
    and where that carries x·K across an integer the sawtooth jumps by s/K ≤ 1/K at that element; the
    pooled feature then moves by ≤ 1/K, the logits by ≤ Σ_c |W_ic|/K. Stripped: rounding alone."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    net[1].running_var.fill_(0.5)
    net, _ = gaaf.convert(net, shift=-1.0)
    x = torch.randn(2, 3, 16, 16)
    report = gaaf.export_onnx(net, x, tmp_path / "gaaf.onnx")
    jump_bound = float(net[5].weight.detach().abs().sum(dim=1).max()) / 1e4
    assert report.max_abs_diff <= 1e-5 + jump_bound
    plain = gaaf.export_onnx(net, x, tmp_path / "plain.onnx", strip=True)
    assert plain.max_abs_diff <= 1e-5
    assert plain.stripped is not None and plain.stripped.bases == {"relu": 1} and plain.stripped.measured > 0
    assert any(isinstance(m, GAAF) for m in net.modules())  # export works on a copy: the model keeps GAAF


@pytest.mark.slow
@needs_exporter
def test_onnx_of_a_transformer_block_with_traced_calls(tmp_path):
    torch.manual_seed(0)
    block, _ = gaaf.convert(TransformerBlock())
    report = gaaf.export_onnx(block, torch.randn(2, 5, 16), tmp_path / "block.onnx")
    assert report.max_abs_diff < 1e-3


def test_a_missing_exporter_is_one_line(monkeypatch, tmp_path):
    from gaaf.errors import UserError
    from gaaf.models import onnx_export

    monkeypatch.setattr(onnx_export, "_importable", lambda name: name != "onnxscript")
    with pytest.raises(UserError, match=r"^ONNX export needs onnxscript, which is not installed: pip install 'gaaf\[export\]'"):
        gaaf.export_onnx(nn.ReLU(), torch.randn(2, 3), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


# ---------------------------------------------------------------------- gaaf export
@pytest.fixture(scope="module")
def gaaf_run(tmp_path_factory) -> Path:
    from data_fakes import write_fake_cifar10
    from gaaf.train import resolve_config, train

    root = tmp_path_factory.mktemp("export")
    data = write_fake_cifar10(root / "data", n_train=32, n_test=16, seed=0)
    run = root / "run"
    cfg = resolve_config(overrides=dict(model="mlp", hidden=[16], activation="gaaf_relu", shift=-1.0, epochs=1,
                                        batch_size=16, data_dir=str(data), download=False, device="cpu", out=str(run)))
    train(cfg, progress=False, log=False)
    return run


@pytest.mark.slow
@needs_exporter
def test_gaaf_export_from_a_run_folder(gaaf_run, tmp_path, capsys):
    import onnxruntime

    from gaaf.cli import main
    from gaaf.train.checkpoint import load_checkpoint
    from gaaf.train.config import build_model_for, saved_config

    capsys.readouterr()
    path = tmp_path / "out" / "run.onnx"
    assert main(["export", str(gaaf_run / "best.pt"), "--onnx", str(path)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"wrote {path} (ONNX opset ") and "onnxruntime vs torch on batches of 2 and 3" in line
    assert "(mlp, gaaf_relu, epoch 1 of " in line and sorted(p.name for p in path.parent.iterdir()) == ["run.onnx"]
    ckpt = load_checkpoint(gaaf_run / "best.pt")
    model = build_model_for(saved_config(ckpt["config"]), (3, 32, 32), 10)
    model.load_state_dict(ckpt["model"])
    x = torch.randn(5, 3, 32, 32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model.eval()(x)
    jumps = float(model.fc.weight.detach().abs().sum(dim=1).max()) / 1e4  # sawtooth steps moved by matmul rounding
    assert float((torch.from_numpy(got) - want).abs().max()) <= 1e-5 + jumps
    assert main(["export", str(gaaf_run / "best.pt"), "--onnx", str(tmp_path / "plain.onnx"), "--strip"]) == 0
    assert "gaaf.strip: 1 GAAF module -> their base (relu x1)" in capsys.readouterr().out


def test_gaaf_export_errors_are_one_line(gaaf_run, tmp_path, capsys, monkeypatch):
    from gaaf.cli import main
    from gaaf.models import onnx_export

    def error(argv) -> str:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("gaaf: error: ")
        return err

    monkeypatch.setattr(onnx_export, "_importable", lambda name: True)  # as if installed: these fail before exporting
    assert "is a folder; give the file to write" in error(["export", str(gaaf_run), "--onnx", str(tmp_path)])
    assert "no checkpoint at" in error(["export", str(tmp_path / "nope.pt"), "--onnx", str(tmp_path / "x.onnx")])
    monkeypatch.setattr(onnx_export, "_importable", lambda name: False)
    assert "ONNX export needs onnx and onnxscript, which are not installed: pip install 'gaaf[export]'" in error(
        ["export", str(gaaf_run / "best.pt"), "--onnx", str(tmp_path / "x.onnx")])
    assert not (tmp_path / "x.onnx").exists()
