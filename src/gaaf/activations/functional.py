"""Functional GAAF: ``gaaf(x, base, shape=..., frequency=..., variant=..., **shape_params)``.

(Initial version computes the reference composition; the fused autograd op replaces it.)
"""
from __future__ import annotations

from typing import Callable

import torch

from .reference import DEFAULT_FREQUENCY, gaaf_reference
from .spec import GAAFSpec


def gaaf_from_spec(x: torch.Tensor, spec: GAAFSpec) -> torch.Tensor:
    return gaaf_reference(x, spec.base, spec.shape, spec.frequency, spec.variant, **spec.shape_params)


def gaaf(
    x: torch.Tensor,
    base: str = "relu",
    shape: "str | Callable[[torch.Tensor], torch.Tensor]" = "sigmoid",
    frequency: float = DEFAULT_FREQUENCY,
    variant: str = "floor",
    **shape_params: float,
) -> torch.Tensor:
    """φ(x) + g(x)·s(x); see :mod:`gaaf.activations.reference` for the math."""
    return gaaf_from_spec(x, GAAFSpec.build(base, shape, frequency, variant, **shape_params))
