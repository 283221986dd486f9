"""Probes record what the activation passes down, g_out·φ_new'(x), not the total gradient of its input:
in a ResNet v2 block without BatchNorm the first activation reads the block input, which also
feeds the shortcut, so the two differ there."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gaaf.models import activation_sites, resnet_v2
from gaaf.train.probes import ActivationProbe


def _x() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _loss(net: nn.Module) -> torch.Tensor:
    return net(_x()).square().sum()


def _by_hand(net: nn.Module) -> "dict[str, tuple[float, float]]":
    """Per site: (mean |g_out·φ_new'(x)|, mean |dL/dx|), from retained gradients and the site's own
    derivative (autograd through the module alone, on a detached copy of its input)."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for name, site in activation_sites(net):
        def pre(module, args, name=name):
            args[0].retain_grad()
            seen[name] = (args[0], None)

        def post(module, args, out, name=name):
            out.retain_grad()
            seen[name] = (seen[name][0], out)

        handles += [site.register_forward_pre_hook(pre), site.register_forward_hook(post)]
    _loss(net).backward()
    for h in handles:
        h.remove()
    sites = dict(activation_sites(net))
    result = {}
    for name, (x, out) in seen.items():
        xd = x.detach().requires_grad_(True)
        (through,) = torch.autograd.grad(sites[name](xd), xd, out.grad)
        result[name] = (through.abs().mean().item(), x.grad.abs().mean().item())
    net.zero_grad()
    return result


@pytest.mark.parametrize("activation, params", [("tanh", {}), ("gaaf_relu", {"shift": -1.0})])
def test_v2_without_batch_norm_records_the_gradient_through_the_activation(activation, params):
    torch.manual_seed(0)
    net = resnet_v2(20, activation=activation, batch_norm=False, **params).train()
    expected = _by_hand(net)
    probe = ActivationProbe(net, every=1)
    _loss(net).backward()
    record = probe.end_epoch(1)["per_site"]
    probe.close()
    shared = [f"stage{s}.{b}.act1" for s in (1, 2, 3) for b in (0, 1) if (s, b) != (1, 0)]  # read the block input
    assert set(shared) <= set(record)
    for name, (through, total) in expected.items():
        assert record[name]["mean_abs_grad"] == pytest.approx(through, rel=1e-5), name
        if name in shared:  # the block input's total gradient also carries the shortcut's
            assert abs(total - through) > 0.01 * through, name
        else:  # the activation is its input's only consumer: the same number
            assert total == pytest.approx(through, rel=1e-5), name


def test_probing_leaves_outputs_and_parameter_gradients_bitwise_unchanged():
    torch.manual_seed(0)
    net = resnet_v2(11, activation="gaaf_relu", batch_norm=False).train()
    out = net(_x())
    out.square().sum().backward()
    plain = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    probe = ActivationProbe(net, every=1)
    probed_out = net(_x())
    probed_out.square().sum().backward()
    probe.close()
    assert torch.equal(out, probed_out)
    assert all(torch.equal(a, p.grad) for a, p in zip(plain, net.parameters()))
