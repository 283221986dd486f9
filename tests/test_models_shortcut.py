"""ResNet v1 shortcuts: option A (He et al. 2015's CIFAR nets: subsample, zero-pad the new channels,
no parameters) and option B (the Keras example's 1×1 projection, the default)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gaaf.models import ZeroPadShortcut, build_model, count_parameters, resnet_v1
from gaaf.models.resnet import BasicBlock


def _conv_biases(model: nn.Module) -> int:
    return sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None)


def test_option_a_resnet20_has_he_et_al_s_parameter_count():
    """He et al. (arXiv:1512.03385) Table 6: ResNet20 0.27M, ResNet56 0.85M, ResNet110 1.7M. Their convs have
    no bias; the Keras layout's conv biases (one per conv output channel) come on top."""
    net = resnet_v1(20, shortcut="A")
    assert count_parameters(net) == 270_410
    assert _conv_biases(net) == 688  # 16 (stem) + 6·16 + 6·32 + 6·64
    assert count_parameters(net) - _conv_biases(net) == 269_722  # 0.27M
    # exactly option B's count less its two projections (16→32 and 32→64, 1×1 with bias)
    assert count_parameters(resnet_v1(20)) - count_parameters(net) == (16 * 32 + 32) + (32 * 64 + 64)
    for depth, millions in ((56, 0.85), (110, 1.7)):
        a = resnet_v1(depth, shortcut="A")
        assert round((count_parameters(a) - _conv_biases(a)) / 1e6, 2 if depth == 56 else 1) == millions


def test_option_a_has_no_projection_convs_and_b_stays_the_default():
    a, b = resnet_v1(20, shortcut="A"), resnet_v1(20)
    assert sum(isinstance(m, nn.Conv2d) for m in a.modules()) == 19  # stem + 2 per block
    assert sum(isinstance(m, nn.Conv2d) for m in b.modules()) == 21  # + two 1×1 projections
    assert sum(isinstance(m, ZeroPadShortcut) for m in a.modules()) == 2  # stages 2 and 3, first block
    assert sum(isinstance(m, ZeroPadShortcut) for m in b.modules()) == 0
    assert count_parameters(build_model("resnet20_v1", 10, (3, 32, 32))) == 273_066


def test_zero_pad_shortcut_on_a_known_input():
    x = torch.arange(2 * 2 * 4 * 5, dtype=torch.float32).reshape(2, 2, 4, 5)  # odd width: ceil(5/2) = 3
    y = ZeroPadShortcut(2, 4, 2)(x)
    assert y.shape == (2, 4, 2, 3)
    for n in range(2):
        for c in range(2):
            for i in range(2):
                for j in range(3):
                    assert y[n, c, i, j] == x[n, c, 2 * i, 2 * j]  # the pixels a stride-2 1×1 conv reads
    assert torch.equal(y[:, 2:], torch.zeros(2, 2, 2, 3))  # the new channels, after the old ones
    expected0 = torch.tensor([[0.0, 2.0, 4.0], [10.0, 12.0, 14.0]])  # image 0, channel 0 by hand
    assert torch.equal(y[0, 0], expected0)
    assert torch.equal(ZeroPadShortcut(3, 3, 1)(x[:, :1].expand(2, 3, 4, 5)), x[:, :1].expand(2, 3, 4, 5))


def test_zero_pad_shortcut_passes_gradients_to_the_kept_pixels_only():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    ZeroPadShortcut(2, 4, 2)(x).sum().backward()
    expected = torch.zeros(1, 2, 4, 4)
    expected[:, :, ::2, ::2] = 1.0
    assert torch.equal(x.grad, expected)


def test_option_a_block_adds_the_padded_input_to_the_residual_branch():
    torch.manual_seed(0)
    block = BasicBlock(16, 32, 2, nn.ReLU, lambda c: nn.BatchNorm2d(c), shortcut="A").eval()
    x = torch.randn(2, 16, 8, 8)
    branch = block.bn2(block.conv2(block.act1(block.bn1(block.conv1(x)))))  # (2, 32, 4, 4)
    padded = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 4, 4)], dim=1)
    torch.testing.assert_close(block(x), torch.relu(padded + branch), rtol=0, atol=0)


def test_option_a_net_trains_one_step_and_has_the_same_output_shape():
    net = resnet_v1(20, shortcut="A")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = net(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("name, shortcut, message", [
    ("resnet20_v1", "C", "unknown shortcut 'C'; choose A"),
    ("resnet20_v2", "A", "applies to resnet*_v1 only"),
    ("mlp", "A", "applies to resnet*_v1 only; 'mlp' has no shortcuts"),
])
def test_shortcut_that_does_not_fit_is_refused(name, shortcut, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace("(", r"\(")):
        build_model(name, 10, (3, 32, 32), shortcut=shortcut)
