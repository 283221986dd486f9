"""Precise BatchNorm statistics (gaaf.train.precise_bn): exact moments, nothing else touched."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from data_fakes import write_fake_cifar10
from gaaf.models.keras_bn import KerasBatchNorm2d
from gaaf.train import resolve_config, train
from gaaf.train.engine import evaluate_checkpoint
from gaaf.train.precise_bn import batch_norms, evenly_spaced, recalibrate


def _net(bn: type[nn.BatchNorm2d] = nn.BatchNorm2d, dropout: float = 0.5) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), bn(4), nn.ReLU(), nn.Dropout(dropout), nn.Conv2d(4, 5, 1), bn(5))


def test_evenly_spaced():
    assert evenly_spaced(10, 4).tolist() == [0, 2, 5, 7]
    assert evenly_spaced(3, 10).tolist() == [0, 1, 2]  # never more than there are


@pytest.mark.parametrize("bn", [nn.BatchNorm2d, KerasBatchNorm2d])
def test_running_statistics_are_the_exact_moments_of_each_layers_input(bn):
    net = _net(bn, dropout=0.0).double()
    images = torch.randn(37, 3, 5, 5, dtype=torch.float64) * 3 + 1
    x = images[evenly_spaced(37, 30)]
    # by hand: the inputs each BatchNorm sees when the 30 images pass in train mode in batches of 7
    seen: dict[int, list[torch.Tensor]] = {1: [], 5: []}
    hooks = [net[i].register_forward_pre_hook(lambda m, a, i=i: seen[i].append(a[0])) for i in seen]
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for s in range(0, 30, 7):
            net(x[s:s + 7])
    for h in hooks:
        h.remove()
    net.load_state_dict(saved)

    used = recalibrate(net, images, 30, batch_size=7)  # 30 evenly spaced images in batches 7,7,7,7,2
    assert used == 30
    for i, inputs in seen.items():
        every = torch.cat(inputs)
        assert torch.allclose(net[i].running_mean, every.mean(dim=(0, 2, 3)), rtol=0, atol=1e-12)
        assert torch.allclose(net[i].running_var, every.var(dim=(0, 2, 3), unbiased=True), rtol=1e-12, atol=0)
    first = net[0](x)  # the first BatchNorm's input does not depend on the batching
    assert torch.allclose(net[1].running_var, first.var(dim=(0, 2, 3)), rtol=1e-12, atol=0)


def test_weights_rng_and_other_buffers_are_untouched():
    net = _net(KerasBatchNorm2d)
    images = torch.randn(20, 3, 6, 6)
    net.train()
    net(images[:8])  # one training-mode step: debias state moves
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(3)
    expected_next = torch.rand(3)
    torch.manual_seed(3)
    recalibrate(net, images, 16, batch_size=8)
    assert torch.equal(torch.rand(3), expected_next)  # dropout ran, but on a forked stream
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"1.running_mean", "1.running_var", "5.running_mean", "5.running_var"}
    assert net.training  # the mode is restored
    net.eval()
    recalibrate(net, images, 16)
    assert not net.training


def test_nothing_to_do():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    assert recalibrate(mlp, torch.randn(4, 3, 2, 2), 100) == 0
    net = _net()
    assert recalibrate(net, torch.randn(4, 3, 2, 2), 0) == 0
    assert len(batch_norms(net)) == 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar10(tmp_path_factory.mktemp("data"), n_train=96, n_test=40, seed=0)


def _run(data_dir: Path, out: Path, precise_bn: int) -> dict:
    cfg = resolve_config(overrides=dict(model="resnet8_v1", epochs=2, batch_size=32, data_dir=str(data_dir),
                                        download=False, device="cpu", out=str(out), precise_bn=precise_bn))
    return train(cfg, progress=False, log=False)


def test_training_is_bit_identical_with_and_without_it_and_the_checkpoint_keeps_the_statistics(data_dir, tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    _run(data_dir, on, 64)
    _run(data_dir, off, 0)
    a = torch.load(on / "last.pt", weights_only=True)["model"]
    b = torch.load(off / "last.pt", weights_only=True)["model"]
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert differ and all(k.endswith(("running_mean", "running_var")) for k in differ)
    # the checkpoint holds the statistics the last evaluation used
    last = json.loads((on / "summary.json").read_text())["final_test_acc"]
    assert evaluate_checkpoint(on / "last.pt", device="cpu")["test_acc"] == pytest.approx(last, abs=1e-12)
    assert json.loads((on / "config.json").read_text())["config"]["precise_bn"] == 64


def test_bad_value_is_one_line():
    from gaaf.errors import UserError
    with pytest.raises(UserError, match=r"precise_bn must be >= 0"):
        resolve_config(overrides=dict(precise_bn=-1))
