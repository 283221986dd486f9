"""CIFAR ResNets v1 and v2: PyTorch ports of the Keras example ``examples/cifar10_resnet.py``.

The GAAF seed code extended that example, so these nets follow it layer for layer: its
``resnet_layer`` (Conv2D-BN-Activation, or BN-Activation-Conv2D when ``conv_first=False``),
``resnet_v1`` (He et al. 2015, arXiv:1512.03385) and ``resnet_v2`` (He et al. 2016,
arXiv:1603.05027). Everything Keras does by default is done here too:

- Conv2D ``padding="same"`` (TensorFlow rule: a stride-2 3×3 conv on an even-sized map pads
  0 before and 1 after, see :class:`Conv2dSame`), with a bias (``use_bias=True``);
- ``kernel_initializer="he_normal"`` for every conv and the Dense head, zero biases;
- ``BatchNormalization()``: momentum 0.99 / epsilon 1e-3, i.e. PyTorch momentum 0.01, eps 1e-3;
  ``keras2_batch_norm=True`` also keeps Keras 2.2 / TF 1.x's zero-debiased moving statistics
  (:class:`~gaaf.models.keras_bn.KerasBatchNorm2d`, what the seed ran);
- ``AveragePooling2D(pool_size=8)`` (stride 8, "valid"), ``Flatten()``, ``Dense(num_classes)``.
  The head returns logits: the example's softmax belongs in the loss (``F.cross_entropy``).

Not part of the module: the example's ``kernel_regularizer=l2(1e-4)`` on conv kernels (loss term
1e-4·Σw², gradient 2e-4·w; the Dense kernel has none) is the training loop's business.

Architecture (n residual blocks per stage; a "site" is one activation module):

    ===========  ======================================  =====================================
                 v1, depth 6n+2 (basic blocks)           v2, depth 9n+2 (pre-act bottlenecks)
    ===========  ======================================  =====================================
    stem         conv3×3 16, BN, act                     conv3×3 16, BN, act
    stage 1      [conv3×3 16, BN, act, conv3×3 16, BN]   [BN, act, conv1×1 16, BN, act,
                 + x, act                    × n          conv3×3 16, BN, act, conv1×1 64] + x × n
    stage 2      same, 32 filters, first conv stride 2   16→ 64 in / 128 out, first 1×1 stride 2
    stage 3      same, 64 filters, first conv stride 2   128 in / 256 out, first 1×1 stride 2
    head         avgpool 8, flatten, dense               BN, act, avgpool 8, flatten, dense
    shortcut     where the shape changes (stages 2, 3):  conv1×1 (no BN) in every stage's first
                 B: conv1×1 (no BN, the Keras example);  block, else identity
                 A: parameter-free zero padding;
                 else identity
    sites        6n + 1                                  9n + 1 (stage 1's first block has no
                                                         BN-act before its first conv)
    ===========  ======================================  =====================================

Trainable parameters: ResNet20 v1 273,066; ResNet56 v2 1,663,338 (as Keras's model.summary()).

Every BN → activation pair (with v1's residual addition in between) goes through
:func:`~gaaf.models.bn_act.bn_act`: in eager GAAF training it runs as one op that keeps no BN output
for the backward (:mod:`gaaf.activations.bn_gaaf`), elsewhere it calls the modules. The modules and
state_dict keys are the same either way; values agree to floating-point rounding.

``seed_v2_bug=True`` (v2 only) builds the seed's v2 as it ran (GAAF-keras ``models/resnet_v2.py``).
The seed turned the example's ``activation = 'relu'`` at the top of the block loop into
``activation = activation`` and its head's ``Activation('relu')`` into ``Activation(activation)``.
The first block (stage 1, block 0) sets ``activation = None``, and nothing resets it: every later
block's first layer is BN → *no activation* → conv1×1 (``resnet_layer(..., activation=None)``), and
the head is BN → ``Activation(None)``, which Keras 2 makes ``linear``. So the leading activation of
the 3n − 1 later blocks and the head's activation are identities (3n sites fewer: 6n + 1, the BNs
are all kept). The seed's other sites never took its `activation` argument: the stem and the
blocks' 3×3 and last 1×1 layers call ``resnet_layer`` without it, i.e. with its default ``'relu'``.
Whatever activation the seed was given, its v2 was therefore relu at 6n + 1 sites and linear at
the other 3n: ``resnet_v2(depth, activation="relu", seed_v2_bug=True)`` is exactly that layer graph
(the seed's BatchNorm statistics are ``keras2_batch_norm``).

Shortcuts of v1 (He et al. 2015, sec. 3.3 and 4.2). Where a block halves the map and doubles the
channels, option B (the default, the Keras example's and so the seed's) projects x with a strided
1×1 conv; option A (``shortcut="A"``, He et al.'s CIFAR nets) is parameter-free:

    A(x)[n, c, i, j] = x[n, c, s·i, s·j]   for c < C_in,   0 for C_in ≤ c < C_out   (s = 2)

the pixels a stride-2 1×1 conv reads, extra channels zero (appended after the identity channels, as
in fb.resnet.torch's shortcutType 'A'). ResNet20 v1 with option A has 270,410 parameters:
He et al.'s 0.27M (Table 6; 269,722 without biases) plus the Keras layout's 688 conv biases, each
right before a BatchNorm, whose batch mean cancels it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Union

import torch
from torch import nn

from ._init import batch_norm2d, init_keras_
from .bn_act import BNAct, ConvBNAct, bn_act, fusable, fused_bn_shortcut_act
from ._sites import ActivationArg, SiteFactory, site_factory
from .keras_bn import KerasBatchNorm2d
from .layers import SHORTCUTS, Conv2dSame, ZeroPadShortcut, check_shortcut, conv1x1, conv3x3

Size2 = Union[int, "tuple[int, int]"]
#: channels → a normalisation module (BatchNorm2d, KerasBatchNorm2d or Identity)
NormFactory = Callable[[int], nn.Module]

#: Depth rule, canonical examples and block type per version.
_DEPTH_RULE = {1: (6, "6n+2"), 2: (9, "9n+2")}
_DEPTH_EXAMPLES = {1: (8, 14, 20, 26, 32, 44, 56, 110), 2: (11, 20, 29, 38, 56, 110, 164)}
_POOL = 8  # AveragePooling2D(pool_size=8)
def _no_norm(channels: int) -> nn.Module:
    return nn.Identity()


def norm_factory(batch_norm: bool, keras2: bool = False) -> NormFactory:
    """BatchNorm with PyTorch's moving statistics, with Keras 2.2's zero-debiased ones
    (`KerasBatchNorm2d`, `keras2`), or none (`batch_norm` False)."""
    if not batch_norm:
        return _no_norm
    return KerasBatchNorm2d if keras2 else batch_norm2d


class BasicBlock(nn.Module):
    """v1 residual unit: act(shortcut(x) + BN(conv3×3(act(BN(conv3×3(x)))))).

    The last activation comes after the addition (Keras: ``Activation('relu')`` after ``add``).
    """

    def __init__(
        self, in_planes: int, planes: int, stride: int, act: SiteFactory, norm: NormFactory, shortcut: str = "B",
    ) -> None:
        super().__init__()
        # registration order = forward order, so activation_sites() lists sites in forward order
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = norm(planes)
        self.act1 = act()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes)
        # only where the shape changes: a linear projection (B; no BN, no activation) or zero padding (A)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            project = shortcut == "B"
            self.shortcut = conv1x1(in_planes, planes, stride) if project else ZeroPadShortcut(in_planes, planes, stride)
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = bn_act(self.bn1, self.act1, self.conv1(x))  # (N, planes, H/s, W/s)
        z = self.conv2(y)
        if fusable(self.bn2, self.act2, z):  # eager GAAF training: BN + shortcut + act as one op
            return fused_bn_shortcut_act(self.bn2, self.act2, z, self.shortcut, x)
        return self.act2(self.shortcut(x) + self.bn2(z))


class Bottleneck(nn.Module):
    """v2 pre-activation bottleneck: shortcut(x) + conv1×1(act(BN(conv3×3(act(BN(conv1×1(act(BN(x))))))))).

    ``preact=False`` (the very first block of the net) drops the leading BN-act, as the Keras
    example does with ``activation=None, batch_normalization=False``: the stem just applied them.
    ``preact_activation=False`` keeps the leading BN but drops its activation (the seed's v2 bug,
    see the module docstring): conv1×1(BN(x)). The stride sits on the first 1×1 conv and on the
    1×1 projection shortcut.
    """

    def __init__(
        self,
        in_planes: int,
        mid_planes: int,
        out_planes: int,
        stride: int,
        act: SiteFactory,
        norm: NormFactory,
        *,
        preact: bool = True,
        preact_activation: bool = True,
        project: bool = False,
    ) -> None:
        super().__init__()
        self.bn1 = norm(in_planes) if preact else nn.Identity()
        self.act1 = act() if preact and preact_activation else nn.Identity()
        self.conv1 = conv1x1(in_planes, mid_planes, stride)
        self.bn2 = norm(mid_planes)
        self.act2 = act()
        self.conv2 = conv3x3(mid_planes, mid_planes)
        self.bn3 = norm(mid_planes)
        self.act3 = act()
        self.conv3 = conv1x1(mid_planes, out_planes)
        # the shortcut reads the raw x, not the pre-activated one (Keras passes `x`, not `y`)
        self.shortcut = conv1x1(in_planes, out_planes, stride) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(bn_act(self.bn1, self.act1, x))  # (N, mid, H/s, W/s)
        y = self.conv2(bn_act(self.bn2, self.act2, y))
        y = self.conv3(bn_act(self.bn3, self.act3, y))  # (N, out, H/s, W/s)
        return self.shortcut(x) + y


class ResNet(nn.Module):
    """stem → stage1 → stage2 → stage3 → head (v2: BN-act; v1: none) → avgpool 8 → flatten → fc."""

    def __init__(
        self, stem: nn.Module, stages: "list[nn.Module]", head: nn.Module, fc_in: int, num_classes: int,
        *, version: int, depth: int,
    ) -> None:
        super().__init__()
        self.version, self.depth = version, depth
        self.stem = stem
        self.stage1, self.stage2, self.stage3 = stages
        self.head = head
        self.pool = nn.AvgPool2d(kernel_size=_POOL, stride=_POOL)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(fc_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, 16, H, W)
        x = self.stage3(self.stage2(self.stage1(x)))  # (N, C, ceil(H/4), ceil(W/4))
        x = self.pool(self.head(x))  # (N, C, h, w), 1×1 for 32×32 inputs
        return self.fc(self.flatten(x))  # logits (N, num_classes)

    def extra_repr(self) -> str:
        return f"version={self.version}, depth={self.depth}"


def check_depth(version: int, depth: Any) -> int:
    """Blocks per stage n for a valid depth, else ValueError naming the rule and valid depths."""
    step, rule = _DEPTH_RULE[version]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        examples = ", ".join(str(d) for d in _DEPTH_EXAMPLES[version])
        raise ValueError(f"resnet{depth}_v{version}: depth must be {rule} with n ≥ 1: {examples}, ...")
    return (depth - 2) // step


def _pooled_size(size: int, depth: int, version: int) -> int:
    """Side of the map after two stride-2 stages and the 8×8 "valid" average pool."""
    final = -(-(-(-size // 2)) // 2)  # ceil(ceil(size / 2) / 2)
    if final < _POOL:
        raise ValueError(
            f"resnet{depth}_v{version}: inputs must be at least 29 pixels on each side so the final "
            f"{final}×{final} map fits the 8×8 average pool, got {size}; pad the images (e.g. MNIST to 32)"
        )
    return (final - _POOL) // _POOL + 1


def _resnet(
    version: int,
    depth: int,
    num_classes: int,
    activation: ActivationArg,
    stem_activation: "ActivationArg | None",
    in_channels: int,
    batch_norm: bool,
    input_size: Size2,
    act_params: "dict[str, Any]",
    keras2_batch_norm: bool = False,
    seed_v2_bug: bool = False,
    shortcut: str = "B",
) -> ResNet:
    n = check_depth(version, depth)
    check_shortcut(shortcut)
    if "seed_v2_bug" in act_params:  # resnet_v1(..., seed_v2_bug=...) would read it as an activation parameter
        raise ValueError(f"seed_v2_bug applies to ResNet v2 models only (resnet{{9n+2}}_v2), not resnet{depth}_v1")
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    pooled = _pooled_size(h, depth, version) * _pooled_size(w, depth, version)

    act = site_factory(activation, act_params)
    norm = norm_factory(batch_norm, keras2_batch_norm)
    # the stem gets its own activation only when asked (stem_activation="relu" = the seed's v1)
    stem_act = act if stem_activation is None else site_factory(stem_activation, what="stem_activation")
    stem = ConvBNAct(OrderedDict(conv=conv3x3(in_channels, 16), bn=norm(16), act=stem_act()))

    if version == 1:
        stages, out_planes = _v1_stages(n, act, norm, shortcut)
        head: nn.Module = nn.Identity()  # v1 has no BN-act after the last addition
    else:
        if shortcut != "B":
            raise ValueError(f"shortcut {shortcut!r} applies to resnet*_v1 only; resnet{depth}_v2 projects (B), "
                             "as the Keras example (--shortcut B; the he2016 preset sets A, for He et al.'s v1 nets)")
        stages, out_planes = _v2_stages(n, act, norm, seed_v2_bug)
        # the seed's v2 bug: its head was BN → Activation(None), i.e. linear
        head = BNAct(OrderedDict(bn=norm(out_planes), act=nn.Identity() if seed_v2_bug else act()))

    model = ResNet(stem, stages, head, out_planes * pooled, num_classes, version=version, depth=depth)
    return init_keras_(model, "he_normal")


def _v1_stages(n: int, act: SiteFactory, norm: NormFactory, shortcut: str) -> "tuple[list[nn.Module], int]":
    """v1's three stages of n BasicBlocks (16, 32, 64 channels; stages 2 and 3 start at stride 2),
    and the channels they end with."""
    stages: list[nn.Module] = []
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64)):
        blocks = [
            BasicBlock(in_planes if b == 0 else planes, planes, 2 if stage > 0 and b == 0 else 1, act, norm, shortcut)
            for b in range(n)
        ]
        stages.append(nn.Sequential(*blocks))
        in_planes = planes
    return stages, 64


def _v2_stages(n: int, act: SiteFactory, norm: NormFactory, seed_v2_bug: bool) -> "tuple[list[nn.Module], int]":
    """v2's three stages of n Bottlenecks (Keras' num_filters_in 16 → 64, then ×2 per stage), and the
    channels they end with; seed_v2_bug drops the leading activation as the seed's v2 did."""
    stages: list[nn.Module] = []
    mid = 16  # Keras num_filters_in
    out_planes = mid
    for stage in range(3):
        out_planes = mid * 4 if stage == 0 else mid * 2
        in_planes = mid  # the stem's 16, then the previous stage's output
        blocks = [
            Bottleneck(
                in_planes if b == 0 else out_planes, mid, out_planes, 2 if stage > 0 and b == 0 else 1,
                act, norm, preact=not (stage == 0 and b == 0), project=b == 0,
                preact_activation=not seed_v2_bug,  # the seed's v2: BN, no activation, conv1×1
            )
            for b in range(n)
        ]
        stages.append(nn.Sequential(*blocks))
        mid = out_planes
    return stages, out_planes


def resnet_v1(
    depth: int,
    num_classes: int = 10,
    activation: ActivationArg = "relu",
    *,
    stem_activation: "ActivationArg | None" = None,
    in_channels: int = 3,
    batch_norm: bool = True,
    keras2_batch_norm: bool = False,
    shortcut: str = "B",
    input_size: Size2 = 32,
    **act_params: Any,
) -> ResNet:
    """ResNet v1 of depth 6n+2 (20, 32, 44, 56, 110, ...), the Keras example's ``resnet_v1``.

    Args:
        depth: 6n+2 with n ≥ 1 blocks per stage.
        num_classes: width of the Dense head (logits).
        activation: registry name (``gaaf.get_activation(activation, **act_params)``) or a module
            class/factory; a fresh module is built for every site, the stem's included.
        stem_activation: the stem's activation; None means `activation`. Built without act_params
            (pass a factory such as ``functools.partial`` for a parameterised one).
        in_channels: image channels (3 for CIFAR/SVHN).
        batch_norm: False builds the same net without any BatchNorm (the paper's "base" design).
        keras2_batch_norm: BatchNorm with Keras 2.2 / TF 1.x zero-debiased moving statistics
            (`KerasBatchNorm2d`, as the seed trained) instead of PyTorch's ``BatchNorm2d``.
        shortcut: where the shape changes, "B" projects with a 1×1 conv (the Keras example, the
            seed) and "A" subsamples and zero-pads the extra channels (He et al.'s CIFAR ResNets;
            `ZeroPadShortcut`, no parameters).
        input_size: H and W (int or pair) the head's Dense is sized for; 32 gives a 1×1 pooled map.
        **act_params: the activation's parameters, e.g. ``shift=-1.0`` for "gaaf_relu".

    The seed's v1 kept ``x = resnet_layer(inputs=inputs)``, i.e. a relu stem, whatever activation
    the blocks used, so its "GAAF" nets were not GAAF at every site. Here the stem follows
    `activation` by default; ``stem_activation="relu"`` reproduces the seed.
    """
    return _resnet(
        1, depth, num_classes, activation, stem_activation, in_channels, batch_norm, input_size, act_params,
        keras2_batch_norm, shortcut=shortcut,
    )


def resnet_v2(
    depth: int,
    num_classes: int = 10,
    activation: ActivationArg = "relu",
    *,
    stem_activation: "ActivationArg | None" = None,
    in_channels: int = 3,
    batch_norm: bool = True,
    keras2_batch_norm: bool = False,
    seed_v2_bug: bool = False,
    shortcut: str = "B",
    input_size: Size2 = 32,
    **act_params: Any,
) -> ResNet:
    """ResNet v2 of depth 9n+2 (20, 29, 56, 110, 164, ...), the Keras example's ``resnet_v2``.

    Pre-activation bottleneck blocks; arguments as :func:`resnet_v1` (`shortcut` "B" only: every
    stage's first block projects, as in the Keras example). `activation` is applied at
    every one of the 9n+1 sites (stem, each BN-act inside the blocks, and the BN-act head).

    seed_v2_bug: True reproduces the seed's v2 (see the module docstring): the leading activation of
    every block after the first and the head's activation are identities (BN kept), 6n + 1 sites.

    The seed's v2 never applied its `activation` argument anywhere, and its "relu" v2 was not the
    example's either. The seed replaced the loop's ``activation = 'relu'`` with
    ``activation = activation`` and the head's ``Activation('relu')`` with ``Activation(activation)``:
    the first block sets ``activation = None`` before the argument is used, and it stays None, so
    the later blocks' leading BN is followed by no activation and the head is linear, whatever the
    activation, relu included. The other sites are ``resnet_layer``'s default relu. Its v2 results,
    "GAAF" or not, are those of ``activation="relu", seed_v2_bug=True``.
    """
    return _resnet(
        2, depth, num_classes, activation, stem_activation, in_channels, batch_norm, input_size, act_params,
        keras2_batch_norm, seed_v2_bug, shortcut=shortcut,
    )
