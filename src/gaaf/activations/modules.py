"""`GAAF` as an nn.Module: the layer form of :func:`gaaf.functional.gaaf`."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .functional import gaaf_from_spec
from .catalog import DEFAULT_FREQUENCY
from .spec import GAAFSpec


class GAAF(nn.Module):
    """φ(x) + g(x)·s(x) with g the 1/K-period sawtooth (Hahn & Choi, arXiv:1806.09783).

    Args:
        base: base activation φ: relu, tanh, sigmoid, leaky_relu, elu, gelu, silu, softplus, or its
            preset name (``"gaaf_relu"`` is the same as ``"relu"``).
        shape: s(x): "sigmoid" (sigmoid(slope·(x + shift))), "gaussian" (exp(−(x − center)²/width)),
            "none" (s ≡ 1), or any callable x → s(x). None (the default): the base's own shape.
        frequency: K, the sawtooth's inverse period (default 10,000). Output moves by ≤ 0.5/K.
        variant: "floor" (paper), "round" (seed's ex13) or "surrogate" (K → ∞: forward exactly
            φ(x), gradient φ'(x) + s(x); tests whether the sawtooth's value matters).
        **shape_params: the shape's parameters (shift, slope / center, width). Those not given
            take the base's defaults (:mod:`gaaf.activations.catalog`): ``GAAF("relu")`` is the
            ``gaaf_relu`` preset, sigmoid shape with shift 4.

    Runs the fused op (:mod:`gaaf.activations.fused`): only x is saved for backward, the gradient
    φ' + g'·s + g·s' is exact, and every finite input gives a finite output and gradient. From
    |x·K| ≥ 2**23 on (|x| ≥ 838.8608 in float32 at K = 1e4) every float32 x·K is an integer, so
    g ≡ −0.5/K there, the output is φ(x) − 0.5·s(x)/K and "round"'s g' is 0. In bfloat16 most of
    the sawtooth is lost (see :mod:`gaaf.activations.precision`; a warning says so once).
    """

    def __init__(
        self,
        base: str = "relu",
        shape: "str | Callable[[torch.Tensor], torch.Tensor] | None" = None,
        frequency: float = DEFAULT_FREQUENCY,
        variant: str = "floor",
        **shape_params: float,
    ) -> None:
        super().__init__()
        self.spec = GAAFSpec.build(base, shape, frequency, variant, **shape_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaaf_from_spec(x, self.spec)

    def extra_repr(self) -> str:
        return self.spec.describe()
