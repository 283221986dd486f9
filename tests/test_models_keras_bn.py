"""KerasBatchNorm2d against a hand computation of Keras 2.2 / TensorFlow 1.x's moving statistics.

The reference below is written from the formulas, not from the module: after t training steps
with batch means μ_i and Keras's rescaled variances v_i = σ²_i · n/(n − 1) · n/(n − 1 − ε)
(σ²_i the biased batch variance, n values per channel), TF's zero-debiased average is

    moving_t = (1 − m) · Σ_{i=1..t} m^(t−i) · value_i / (1 − m^t),      m = 0.99.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gaaf.models import KerasBatchNorm2d, build_model, resnet_v1, resnet_v2
from gaaf.train import resolve_config
from gaaf.train.config import PRESETS, TrainConfig, build_model_for, resolved_dict, unwrap_config

M, EPS = 0.99, 1e-3


def _batches(steps: int, shape: tuple[int, ...] = (4, 3, 5, 6), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # channels with different means and scales, shifted per step, so each statistic moves
    scale = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64).view(1, 3, 1, 1)
    return [torch.randn(shape, generator=g, dtype=torch.float64) * scale + 3.0 * s - 1.0 for s in range(steps)]


def _hand_stats(batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-debiased averages of the batch means and Keras-rescaled variances, per the module doc."""
    means, variances = [], []
    for x in batches:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, n)
        n = flat.shape[1]
        mu = flat.mean(dim=1)
        biased = ((flat - mu[:, None]) ** 2).mean(dim=1)
        means.append(mu)
        variances.append(biased * n / (n - 1) * n / (n - (1.0 + EPS)))
    t = len(batches)
    w = [(1 - M) * M ** (t - i) for i in range(1, t + 1)]
    debias = 1 - M**t
    return (sum(wi * v for wi, v in zip(w, means)) / debias, sum(wi * v for wi, v in zip(w, variances)) / debias)


def test_moving_statistics_are_tf_zero_debiased_averages_after_every_step():
    bn = KerasBatchNorm2d(3).double().train()
    batches = _batches(5)
    for t in range(1, len(batches) + 1):
        bn(batches[t - 1])
        mean, var = _hand_stats(batches[:t])
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-12, atol=1e-12)
        assert bn.local_step.item() == t and bn.num_batches_tracked.item() == t


def test_first_step_stats_are_the_batch_stats_not_pulled_to_the_initial_values():
    # the point of zero-debiasing: after one step the moving mean is the batch mean (PyTorch's would be 1% of it)
    bn = KerasBatchNorm2d(3).double().train()
    x = _batches(1)[0]
    bn(x)
    n = x.numel() // 3
    torch.testing.assert_close(bn.running_mean, x.mean(dim=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    expected_var = x.var(dim=(0, 2, 3), unbiased=False) * n / (n - 1) * n / (n - 1 - EPS)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-12, atol=1e-12)


def test_train_output_uses_batch_stats_with_biased_variance():
    bn = KerasBatchNorm2d(3).double().train()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = _batches(1)[0]
    mu = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    ref = (x - mu) / torch.sqrt(var + EPS) * bn.weight.view(1, 3, 1, 1) + bn.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(bn(x), ref, rtol=1e-12, atol=1e-12)


def test_eval_output_normalises_with_the_debiased_statistics():
    bn = KerasBatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    view = lambda v: v.view(1, 3, 1, 1)  # noqa: E731
    # before any training step: Keras's initial moving mean 0 and variance 1
    ref0 = x / torch.sqrt(torch.tensor(1.0 + EPS, dtype=torch.float64)) * view(bn.weight) + view(bn.bias)
    torch.testing.assert_close(bn.eval()(x), ref0, rtol=1e-12, atol=1e-12)
    batches = _batches(3)
    bn.train()
    for b in batches:
        bn(b)
    mean, var = _hand_stats(batches)
    ref = (x - view(mean)) / torch.sqrt(view(var) + EPS) * view(bn.weight) + view(bn.bias)
    before = bn.running_mean.clone()
    torch.testing.assert_close(bn.eval()(x), ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(bn.running_mean, before)  # evaluation updates nothing


def test_debias_state_round_trips_through_the_state_dict():
    # a resumed run must continue the same averages: `biased_*` and `local_step` travel with the model
    batches = _batches(6)
    straight = KerasBatchNorm2d(3).double().train()
    for b in batches:
        straight(b)
    first = KerasBatchNorm2d(3).double().train()
    for b in batches[:3]:
        first(b)
    state = first.state_dict()
    assert {"biased_mean", "biased_var", "local_step", "running_mean", "running_var"} <= set(state)
    resumed = KerasBatchNorm2d(3).double().train()
    resumed.load_state_dict(state)
    for b in batches[3:]:
        resumed(b)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_gradients_flow_through_batch_statistics_like_plain_batch_norm():
    # the training forward is BatchNorm's: same output and gradients as nn.BatchNorm2d in train mode
    x = _batches(1)[0].requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    ours, plain = KerasBatchNorm2d(3).double().train(), nn.BatchNorm2d(3, eps=EPS).double().train()
    ours(x).pow(2).sum().backward()
    plain(x2).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, plain.weight.grad, rtol=1e-12, atol=1e-12)


def test_bad_input_and_momentum_are_refused():
    with pytest.raises(ValueError, match="keras_momentum"):
        KerasBatchNorm2d(3, keras_momentum=1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        KerasBatchNorm2d(3)(torch.randn(4, 3))


@pytest.mark.parametrize("builder, depth", [(resnet_v1, 8), (resnet_v2, 11)])
def test_resnets_use_keras_batch_norm_only_when_asked(builder, depth):
    keras2 = builder(depth, keras2_batch_norm=True)
    plain = builder(depth)
    bns = lambda net: [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]  # noqa: E731
    assert bns(keras2) and all(type(m) is KerasBatchNorm2d for m in bns(keras2))
    assert bns(plain) and all(type(m) is nn.BatchNorm2d for m in bns(plain))
    assert len(bns(keras2)) == len(bns(plain))
    assert not bns(builder(depth, batch_norm=False, keras2_batch_norm=True))
    # same parameters, same initial weights for one seed: only the buffers differ
    names = lambda net: [n for n, _ in net.named_parameters()]  # noqa: E731
    assert names(keras2) == names(plain)


def test_config_option_off_by_default_and_on_by_flag():
    """Opt-in for now (README: on the proxy a 2-epoch seed run did not improve with it)."""
    assert PRESETS["seed"]["keras2_batch_norm"] is False and TrainConfig().keras2_batch_norm is False
    assert resolve_config(overrides={"preset": "he2016"}).keras2_batch_norm is False
    plain = build_model_for(resolve_config(overrides={"model": "resnet8_v1"}), (3, 32, 32), 10)
    assert not isinstance(plain.stem.bn, KerasBatchNorm2d)
    cfg = resolve_config(overrides={"model": "resnet8_v1", "keras2_batch_norm": True})
    net = build_model_for(cfg, (3, 32, 32), 10)
    assert isinstance(net.stem.bn, KerasBatchNorm2d)
    assert isinstance(build_model("mlp", 10, (1, 28, 28), keras2_batch_norm=True), nn.Module)  # no BN: ignored
    # a run written before the option existed trained with PyTorch's BatchNorm statistics
    old = {k: v for k, v in cfg.to_dict().items() if k != "keras2_batch_norm"}
    assert resolved_dict(old)["keras2_batch_norm"] is False
    assert unwrap_config({"config": old, "meta": {}})["keras2_batch_norm"] is False
    assert resolve_config({"config": old, "meta": {}}).keras2_batch_norm is False
