"""A multilayer perceptron for MNIST-style experiments (the Keras ``mnist_mlp.py`` layout).

    Flatten → [Dense(h), act, Dropout(p)] for each h in hidden → Dense(num_classes)

Keras Dense defaults: glorot_uniform kernels, U(−a, a) with a = sqrt(6 / (fan_in + fan_out)),
and zero biases. The head returns logits; the softmax belongs in the loss.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from ._init import init_keras_
from ._sites import ActivationArg, site_factory


class MLP(nn.Module):
    """(N, *in_shape) → flatten → hidden layers → logits (N, num_classes)."""

    def __init__(self, features: nn.Sequential, fc: nn.Linear) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.features = features
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)  # (N, in_features)
        return self.fc(self.features(x))  # (N, num_classes)


def mlp(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (512, 512),
    activation: ActivationArg = "relu",
    dropout: float = 0.0,
    **act_params: Any,
) -> MLP:
    """An MLP with one activation site per hidden layer (Keras mnist_mlp: hidden (512, 512), dropout 0.2).

    Args:
        in_features: input size after flattening (784 for 28×28 MNIST).
        num_classes: width of the output layer (logits).
        hidden: widths of the hidden layers; () gives a linear classifier.
        activation: registry name or module class/factory; a fresh module per hidden layer.
        dropout: drop probability after each hidden activation, in [0, 1); 0 adds no Dropout modules.
        **act_params: the activation's parameters, e.g. ``shift=-1.0`` for "gaaf_relu".
    """
    for label, value in (("in_features", in_features), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    widths = tuple(hidden)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in widths):
        raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")

    act = site_factory(activation, act_params)
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    width = in_features
    for i, h in enumerate(widths, start=1):
        layers[f"fc{i}"] = nn.Linear(width, h)
        layers[f"act{i}"] = act()
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(float(dropout))
        width = h
    model = MLP(nn.Sequential(layers), nn.Linear(width, num_classes))
    return init_keras_(model, "glorot_uniform")
