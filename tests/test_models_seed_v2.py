"""`seed_v2_bug=True`: the seed's ResNet v2 (GAAF-keras models/resnet_v2.py) as it ran.

The seed's block loop says ``activation = activation`` where the Keras example says
``activation = 'relu'``, so the ``activation = None`` of the first block (stage 1, block 0) stays:
every later block is BN → (no activation) → conv1×1 → BN-relu-conv3×3 → BN-relu-conv1×1, and the
head is BN → Activation(None) (linear). The Keras cross-check is in test_models.py.
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaaf.activations import GAAF
from gaaf.errors import UserError
from gaaf.models import activation_sites, build_model, count_parameters, resnet_v1, resnet_v2
from gaaf.train.cli import config_from_args
from gaaf.train.config import PRESETS, TrainConfig, build_model_for, resolve_config


def _x(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _blocks(net: nn.Module) -> "list[tuple[int, int, nn.Module]]":
    return [(s, b, block) for s, stage in enumerate((net.stage1, net.stage2, net.stage3)) for b, block in enumerate(stage)]


def _seed_loop_forward(net: nn.Module, x: torch.Tensor, act: Callable, *, seed: bool) -> torch.Tensor:
    """The Keras loop of resnet_v2 written out by hand on `net`'s own layers: `seed` keeps the seed's
    ``activation = activation`` (the None of the first block persists, head ``Activation(activation)``),
    else the example's ``activation = 'relu'`` at the top of every block and a relu head."""
    x = act(net.stem.bn(net.stem.conv(x)))  # resnet_layer's default activation: relu in the seed
    activation: "str | None" = "gaaf_relu"  # the seed's argument: overwritten before its first use
    for stage, res_block, block in _blocks(net):
        if not seed:
            activation = "relu"
        batch_normalization = True
        if stage == 0 and res_block == 0:
            activation, batch_normalization = None, False
        y = block.bn1(x) if batch_normalization else x
        y = act(y) if activation is not None else y
        y = block.conv1(y)
        y = block.conv2(act(block.bn2(y)))  # resnet_layer's default activation
        y = block.conv3(act(block.bn3(y)))
        x = block.shortcut(x) + y
    x = net.head.bn(x)
    if activation is not None or not seed:
        x = act(x)
    return net.fc(torch.flatten(F.avg_pool2d(x, 8), 1))


@pytest.mark.parametrize("depth", [11, 20, 29])
def test_seed_v2_sites_per_block_and_layers(depth):
    n = (depth - 2) // 9
    net = resnet_v2(depth, activation="relu", seed_v2_bug=True)
    names = [name for name, _ in activation_sites(net)]
    assert len(names) == 6 * n + 1  # 9n + 1 less the 3n − 1 later blocks' act1 and the head's act
    expected = ["stem.act"] + [f"stage{s + 1}.{b}.act{k}" for s in range(3) for b in range(n) for k in (2, 3)]
    assert names == expected
    for stage, res_block, block in _blocks(net):
        assert type(block.act1) is nn.Identity  # no activation before the first 1×1 conv, in every block
        first = stage == 0 and res_block == 0
        assert isinstance(block.bn1, nn.Identity if first else nn.BatchNorm2d)  # the BN is kept after the first
    assert type(net.head.act) is nn.Identity and isinstance(net.head.bn, nn.BatchNorm2d)
    default = resnet_v2(depth, activation="relu")
    assert len(activation_sites(default)) == 9 * n + 1
    assert count_parameters(net) == count_parameters(default)  # only parameter-free modules differ
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == \
        sum(isinstance(m, nn.BatchNorm2d) for m in default.modules())


@pytest.mark.parametrize("train", [False, True])
def test_seed_v2_forward_is_the_seed_loop_and_default_is_the_example(train):
    torch.manual_seed(0)
    net = resnet_v2(20, activation="relu", seed_v2_bug=True).train(train)
    torch.manual_seed(0)
    default = resnet_v2(20, activation="relu").train(train)
    for a, b in zip(net.state_dict().values(), default.state_dict().values()):
        assert torch.equal(a, b)  # same weights: the option builds no parameter and draws no random number
    x = _x()
    with torch.no_grad():
        assert torch.equal(net(x), _seed_loop_forward(net, x, torch.relu, seed=True))
        assert torch.equal(default(x), _seed_loop_forward(default, x, torch.relu, seed=False))
        assert not torch.allclose(net(x), default(x))  # the missing activations matter


def test_seed_v2_with_gaaf_keeps_the_identities_and_puts_gaaf_elsewhere():
    net = resnet_v2(11, activation="gaaf_relu", shift=-1.0, seed_v2_bug=True)
    sites = activation_sites(net)
    assert len(sites) == 7 and all(isinstance(m, GAAF) for _, m in sites)
    assert type(net.head.act) is nn.Identity and type(net.stage2[0].act1) is nn.Identity
    with torch.no_grad():
        act = GAAF("relu", shift=-1.0)
        torch.testing.assert_close(net(_x()), _seed_loop_forward(net, _x(), act, seed=True), rtol=0, atol=0)
    # without BatchNorm the buggy sites stay identities (and the BNs Identity placeholders)
    bare = resnet_v2(11, activation="relu", batch_norm=False, seed_v2_bug=True)
    assert len(activation_sites(bare)) == 7 and type(bare.head.act) is nn.Identity


def test_seed_v2_bug_is_a_v2_option_through_build_model_and_the_config():
    net = build_model("resnet20_v2", 10, (3, 32, 32), "relu", seed_v2_bug=True)
    assert len(activation_sites(net)) == 13
    assert len(activation_sites(build_model("resnet20_v2", 10, (3, 32, 32), "relu"))) == 19
    for name in ("resnet20_v1", "mlp"):
        with pytest.raises(ValueError, match="seed_v2_bug applies to ResNet v2 models only"):
            build_model(name, 10, (3, 32, 32), seed_v2_bug=True)
    with pytest.raises(ValueError, match="seed_v2_bug applies to ResNet v2 models only"):
        resnet_v1(8, seed_v2_bug=False)  # v1 has no such option (not an activation parameter either)
    # off by default, in every preset
    assert TrainConfig().seed_v2_bug is False
    assert all(not values.get("seed_v2_bug", False) for values in PRESETS.values())
    cfg = resolve_config(overrides={"model": "resnet11_v2", "seed_v2_bug": True})
    assert cfg.seed_v2_bug is True and len(activation_sites(build_model_for(cfg, (3, 32, 32), 10))) == 7
    with pytest.raises(UserError, match="seed_v2_bug applies to ResNet v2 models only"):
        resolve_config(overrides={"model": "resnet8_v1", "seed_v2_bug": True})
    with pytest.raises(UserError, match="seed_v2_bug must be true or false"):
        resolve_config({"model": "resnet11_v2", "seed_v2_bug": "yes"})


def test_seed_v2_bug_cli_flag():
    from gaaf.cli import build_parser

    parser = build_parser()
    on = config_from_args(parser.parse_args(["train", "--model", "resnet11_v2", "--seed-v2-bug"]))
    off = config_from_args(parser.parse_args(["train", "--model", "resnet11_v2"]))
    assert on.seed_v2_bug is True and off.seed_v2_bug is False
    assert config_from_args(parser.parse_args(["train", "--model", "resnet11_v2", "--no-seed-v2-bug"])).seed_v2_bug is False
