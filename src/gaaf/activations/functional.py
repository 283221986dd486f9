"""Functional GAAF: ``gaaf(x, base, shape=..., frequency=..., variant=..., **shape_params)``.

Both run the fused, exact op :func:`gaaf.activations.fused.gaaf_fused` (saves only x for backward,
closed-form derivative, finite for every finite input); :mod:`gaaf.activations.reference` keeps the
plain composition as the ground truth.
"""
from __future__ import annotations

from typing import Callable

import torch

from .fused import gaaf_fused
from .catalog import DEFAULT_FREQUENCY
from .spec import GAAFSpec


def gaaf_from_spec(x: torch.Tensor, spec: GAAFSpec) -> torch.Tensor:
    """φ(x) + g(x)·s(x) for an already validated :class:`GAAFSpec` (the module's fast path)."""
    return gaaf_fused(x, spec)


def gaaf(
    x: torch.Tensor,
    base: str = "relu",
    shape: "str | Callable[[torch.Tensor], torch.Tensor] | None" = None,
    frequency: float = DEFAULT_FREQUENCY,
    variant: str = "floor",
    **shape_params: float,
) -> torch.Tensor:
    """φ(x) + g(x)·s(x) with the arguments and defaults of :class:`gaaf.GAAF` (`base` may be a
    preset name; see :mod:`gaaf.activations.reference` for the math)."""
    return gaaf_from_spec(x, GAAFSpec.build(base, shape, frequency, variant, **shape_params))


__all__ = ["gaaf", "gaaf_from_spec"]
