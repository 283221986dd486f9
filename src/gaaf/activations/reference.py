r"""The GAAF formulas as plain PyTorch compositions — the ground truth every fast path is tested against.

Gradient Acceleration in Activation Functions (Hahn & Choi, arXiv:1806.09783) adds to a base
activation :math:`\phi` a term that is almost zero in value but has slope one almost everywhere:

.. math::

    g(x) = \frac{xK - \lfloor xK \rfloor - 0.5}{K}            \quad\text{(variant "floor", the paper's)}

    g(x) = \frac{|xK - \mathrm{round}(xK)| - 0.5}{K}          \quad\text{(variant "round", the seed's ex13)}

    \phi_{new}(x) = \phi(x) + g(x)\, s(x)

with frequency :math:`K` (default 10,000) and a shape function :math:`s`. :math:`|g| \le 0.5/K`,
so the output moves by at most :math:`0.5/K`, while autodiff (where floor and round have zero
derivative) gives

.. math::  \phi_{new}'(x) = \phi'(x) + g'(x)\, s(x) + g(x)\, s'(x)

with :math:`g' = 1` ("floor") or :math:`g' = \mathrm{sign}(xK - \mathrm{round}(xK))` ("round").

Variant "surrogate" is the limit K → ∞ of "floor": |g| ≤ 0.5/K vanishes, g' = 1 stays, so

.. math::  \phi_{new}(x) = \phi(x), \qquad \phi_{new}'(x) = \phi'(x) + s(x)

(g·s' vanishes with g). Here it is written as g(x) = x − x.detach(): exactly 0 in value for
finite x, so the forward is φ(x) + 0·s(x) = φ(x) (a −0 may come out as +0), and autograd
differentiates it to 1, giving φ' + 1·s + 0·s' = φ' + s. If a network trains as well with it as
with GAAF, the sawtooth's value does nothing and GAAF acts as a surrogate gradient.

What is deliberately written twice. The names, parameters and defaults come from the one table,
:mod:`.catalog`. The *values* of φ, g and s are written here a second time, independently of
the closed forms in :mod:`.pointwise` that the fused op and its compiled kernels run: here as the
naive composition, which autograd differentiates, there as overflow-safe values with the
derivative φ' + g'·s + g·s' written out by hand. The fused op must match autograd of these
compositions to 1e-12 in float64, so a slip in either writing shows up as a disagreement; sharing
the formulas would make that comparison prove nothing. The naive ``x * K`` overflows for
|x| > 3.4e38 / K, which is one reason the fused op exists.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .catalog import DEFAULT_FREQUENCY, SHAPE_DEFAULTS, VARIANTS, check_names, default_shape, shape_defaults
from .catalog import BASES as _BASE_NAMES

Tensor = torch.Tensor

#: Base activations φ, each a plain elementwise function with PyTorch's default parameters.
BASES: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "leaky_relu": F.leaky_relu,  # negative_slope 0.01
    "elu": F.elu,  # alpha 1
    "gelu": F.gelu,  # exact (erf) form
    "silu": F.silu,
    "softplus": F.softplus,  # beta 1, threshold 20
}
check_names(BASES, _BASE_NAMES, "reference.BASES")


def sawtooth(x: Tensor, frequency: float = DEFAULT_FREQUENCY, variant: str = "floor") -> Tensor:
    """g(x): the gradient-acceleration term, naive form (see module docstring)."""
    if variant == "surrogate":  # K → ∞: value 0 (finite x), derivative 1
        return x - x.detach()
    y = x * frequency
    if variant == "floor":
        return (y - torch.floor(y) - 0.5) / frequency
    if variant == "round":
        return (torch.abs(y - torch.round(y)) - 0.5) / frequency
    raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")


def shape_value(x: Tensor, shape: "str | Callable[[Tensor], Tensor]", **params: float) -> Tensor:
    """s(x) for a named shape (parameters as in SHAPE_DEFAULTS) or a user callable."""
    if callable(shape):
        return shape(x)
    if shape not in SHAPE_DEFAULTS:
        raise ValueError(f"unknown shape {shape!r}; choose one of: {', '.join(SHAPE_DEFAULTS)}")
    p = {**SHAPE_DEFAULTS[shape], **params}
    if shape == "sigmoid":
        return torch.sigmoid(p["slope"] * (x + p["shift"]))
    if shape == "gaussian":
        return torch.exp(-((x - p["center"]) ** 2) / p["width"])
    return torch.ones_like(x)  # "none"


def gaaf_reference(
    x: Tensor,
    base: str = "relu",
    shape: "str | Callable[[Tensor], Tensor] | None" = None,
    frequency: float = DEFAULT_FREQUENCY,
    variant: str = "floor",
    **shape_params: float,
) -> Tensor:
    """φ(x) + g(x)·s(x), composed from plain ops so that autograd gives the exact gradient.

    Defaults as :class:`gaaf.GAAF`'s: shape None is the base's own shape, and parameters not given
    take their defaults for this base and shape (:func:`.catalog.shape_defaults`).
    """
    if shape is None:
        shape = default_shape(base)
    if isinstance(shape, str) and shape in SHAPE_DEFAULTS:
        shape_params = {**shape_defaults(base, shape), **shape_params}
    return BASES[base](x) + sawtooth(x, frequency, variant) * shape_value(x, shape, **shape_params)


def max_g_magnitude(frequency: float = DEFAULT_FREQUENCY) -> float:
    """The largest |g(x)|: 0.5 / K. The forward output differs from φ(x) by at most this."""
    return 0.5 / frequency


def float_resolution_limit(dtype: torch.dtype, frequency: float = DEFAULT_FREQUENCY) -> float:
    """|x| from which x·K, rounded to `dtype`, is always an integer, so g(x) ≡ −0.5/K (and "round"'s g' = 0).

    A float with m stored mantissa bits has spacing 2**(e − m) in [2**e, 2**(e+1)): every float of
    magnitude ≥ 2**m is an integer (spacing ≥ 1). Rounding is monotone and 2**m is a float, so
    |x·K| ≥ 2**m gives a rounded y = x·K with |y| ≥ 2**m, an integer: the limit is 2**m / K = 1/(eps·K).
    float32 (m = 23): 2**23 / 1e4 = 838.8608; float64 (m = 52): 2**52 / 1e4 ≈ 4.5e11. Just below it
    (2**(m−1) ≤ |y| < 2**m) the spacing is 1/2 and g takes two values, −0.5/K and 0; from
    2**(m−j) on, y keeps j fractional bits: the sawtooth is sampled at 2**j phases.

    `dtype` is the one x·K is computed in: the fused op computes float16/bfloat16 in float32, so
    for them pass float32 (their own coarse values are another matter, see :mod:`.precision`).
    """
    return 1.0 / torch.finfo(dtype).eps / frequency  # 1 / eps = 2**(stored mantissa bits)


__all__ = [
    "BASES", "SHAPE_DEFAULTS", "VARIANTS", "DEFAULT_FREQUENCY",
    "sawtooth", "shape_value", "gaaf_reference", "max_g_magnitude", "float_resolution_limit",
]
