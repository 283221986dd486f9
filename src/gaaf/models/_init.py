"""Keras-default initialisers and layer settings, so the PyTorch ports start where Keras starts.

he_normal (Keras ``VarianceScaling(scale=2.0, mode="fan_in", distribution="truncated_normal")``):

    w ~ N(0, σ²) truncated to |w| ≤ 2σ,   σ = sqrt(2 / fan_in) / 0.87962566103423978

The constant is the standard deviation of a unit normal truncated to [−2, 2], so after truncation
the weights' standard deviation is sqrt(2 / fan_in) again. fan_in = in_channels·kh·kw for a
convolution and in_features for a dense layer.

glorot_uniform (Keras Dense's default): w ~ U(−a, a), a = sqrt(6 / (fan_in + fan_out)).

Keras ``BatchNormalization()`` uses momentum 0.99 (moving = 0.99·moving + 0.01·batch) and
epsilon 1e-3; PyTorch's momentum is the weight of the *batch* statistic, so it is 1 − 0.99 = 0.01.
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: std of N(0, 1) truncated to [−2, 2]; Keras divides by it so the truncated std is the target.
TRUNCATED_NORMAL_STD = 0.87962566103423978

#: Keras BatchNormalization defaults, in PyTorch's terms.
BN_MOMENTUM = 0.01  # = 1 − Keras momentum 0.99
BN_EPS = 1e-3


def fan_in(weight: torch.Tensor) -> int:
    """in_features (dense, weight (out, in)) or in_channels·kh·kw (conv, weight (out, in, kh, kw))."""
    if weight.dim() < 2:
        raise ValueError(f"fan_in needs a weight with at least 2 dimensions, got shape {tuple(weight.shape)}")
    return int(weight[0].numel())


def he_normal_std(weight: torch.Tensor) -> float:
    """σ = sqrt(2 / fan_in): the standard deviation he_normal weights end up with."""
    return math.sqrt(2.0 / fan_in(weight))


@torch.no_grad()
def keras_he_normal_(weight: torch.Tensor) -> torch.Tensor:
    """In place: Keras he_normal, N(0, σ'²) truncated at ±2σ', σ' = sqrt(2/fan_in)/0.8796…"""
    stddev = he_normal_std(weight) / TRUNCATED_NORMAL_STD
    # inverse-CDF sampling in one pass (torch.nn.init.trunc_normal_ rejection-samples, which is
    # several times slower on the CPU): u ~ U(2Φ(−2) − 1, 2Φ(2) − 1), w = σ'·√2·erfinv(u)
    edge = math.erf(2.0 / math.sqrt(2.0))  # 2Φ(2) − 1
    weight.uniform_(-edge, edge).erfinv_().mul_(stddev * math.sqrt(2.0))
    return weight.clamp_(-2.0 * stddev, 2.0 * stddev)  # guards float rounding at the edges


@torch.no_grad()
def keras_glorot_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """In place: Keras glorot_uniform, U(−a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    return nn.init.xavier_uniform_(weight, gain=1.0)


def batch_norm2d(channels: int) -> nn.BatchNorm2d:
    """Keras ``BatchNormalization()`` (momentum 0.99, epsilon 1e-3, gamma 1, beta 0) over channels."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


@torch.no_grad()
def init_keras_(model: nn.Module, kernel: str = "he_normal") -> nn.Module:
    """Initialise every Conv2d/Linear kernel the Keras way and zero their biases (Keras default).

    BatchNorm keeps PyTorch's defaults, which equal Keras's (gamma 1, beta 0, moving mean 0,
    moving variance 1).
    """
    init = {"he_normal": keras_he_normal_, "glorot_uniform": keras_glorot_uniform_}.get(kernel)
    if init is None:
        raise ValueError(f"unknown kernel initialiser {kernel!r}; choose one of: glorot_uniform, he_normal")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
