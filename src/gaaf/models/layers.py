"""The Keras example's convolutions and the v1 shortcuts, as layers of :mod:`gaaf.models.resnet`.

- ``conv3x3`` / ``conv1x1``: Keras ``Conv2D(padding="same", use_bias=True)``; a strided 3×3 conv pads
  as TensorFlow does (:class:`Conv2dSame`: 0 before, 1 after on an even size).
- :class:`ZeroPadShortcut`: He et al.'s option A, parameter-free,

      A(x)[n, c, i, j] = x[n, c, s·i, s·j]   for c < C_in,   0 for C_in ≤ c < C_out   (s = stride)

  where option B (the default) projects with ``conv1x1``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: v1 shortcut options where the shape changes: A zero-pads (parameter-free), B projects (1×1 conv)
SHORTCUTS = ("A", "B")


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow/Keras ``padding="same"``: out = ceil(in / stride).

    TF pads ``total = max((out − 1)·stride + k − in, 0)`` with ``total // 2`` before and the rest
    after; for a stride-2 3×3 conv on an even size that is (0, 1), where PyTorch's symmetric
    ``padding=1`` would shift the sampling grid by one pixel. Only strided convs need this
    (stride 1 with an odd kernel is symmetric), so only they use it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W); pad W then H as F.pad wants (left, right, top, bottom)
        pad_h = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _same_pad(size: int, kernel: int, stride: int) -> int:
    out = -(-size // stride)  # ceil(size / stride)
    return max((out - 1) * stride + kernel - size, 0)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 Conv2D, "same" padding, with bias."""
    if stride == 1:
        return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=True)
    return Conv2dSame(in_planes, out_planes, kernel_size=3, stride=stride)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 Conv2D with bias; "same" padding is zero padding for a 1×1 kernel at any stride."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=True)


class ZeroPadShortcut(nn.Module):
    """Option A: x subsampled by `stride` (every stride-th row and column from the first) with
    `out_planes − in_planes` zero channels appended: (N, C_in, H, W) → (N, C_out, ⌈H/s⌉, ⌈W/s⌉)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"a zero-padding shortcut cannot drop channels: {in_planes} -> {out_planes}")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_planes - self.in_planes))  # (W, H, C) pads: zeros after C_in

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


def check_shortcut(shortcut: Any) -> str:
    """"A" or "B", else ValueError naming the choices."""
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose A (zero padding, He et al.'s CIFAR nets) "
                         f"or B (1×1 projection, the Keras example's)")
    return str(shortcut)
