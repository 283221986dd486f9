"""Models written the way users write them, for the tests of gaaf.convert / gaaf.strip / export:
a torchvision-style ResNet (one ``nn.ReLU(inplace=True)`` per block, called twice) and a
pre-norm transformer block with its MLP written with ``F.gelu``, plus modules for the corner cases."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock as written there: self.relu is used twice."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: "nn.Module | None" = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet layout, small: stem conv-bn-relu-maxpool, two stages of BasicBlocks."""

    def __init__(self, widths: "tuple[int, ...]" = (8, 16), blocks: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(widths[0], blocks, 1)
        self.layer2 = self._make_layer(widths[1], blocks, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[1], num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Mlp(nn.Module):
    """The transformer MLP as timm and many papers write it: the activation is a function call."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(x))
        x = F.dropout(x, self.drop, training=self.training)  # a trace must not freeze the mode
        return self.fc2(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: attention, then the F.gelu MLP; a tanh-gated residual (torch.tanh, x.sigmoid())."""

    def __init__(self, dim: int = 16, heads: int = 2, drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim, drop)
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return x * self.gate(x).sigmoid() + torch.tanh(x)


class InplaceCalls(nn.Module):
    """In-place functional calls whose return value is dropped: later reads of x see the activation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        x.relu_()
        y = F.elu_(x * 2.0)
        return x + y


class Branchy(nn.Module):
    """Data-dependent control flow: does not trace; three activation calls in its forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return F.relu(x)
        return torch.tanh(x).sigmoid()


class OptionalMask(nn.Module):
    """A forward with an optional argument: a trace would freeze `mask is None`."""

    def forward(self, x: torch.Tensor, mask: "torch.Tensor | None" = None) -> torch.Tensor:
        if mask is not None:
            x = x * mask
        return F.silu(x)


class FunctionalParams(nn.Module):
    """Functional calls with parameters GAAF's bases have or lack."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) + F.leaky_relu(x, negative_slope=0.01) + F.softplus(x) + F.relu6(x)
