r"""The one table of what GAAF is made of: base activations, shapes s(x) with their parameters and
defaults, sawtooth variants and the default frequency. Pure Python (no PyTorch): the spec, the
presets and the Keras layer read it without importing torch.

Every implementation is a table keyed by these names and checked against them on import
(:func:`check_names`): the naive compositions of :mod:`.reference`, the closed forms of
:mod:`.pointwise` (which the compiled kernels run), the plain torch and Keras layers.

Bases φ (PyTorch's default parameters) and their derivatives, Φ the normal CDF:

=========== ====================================== ==========================================
base        φ(x)                                   φ'(x)
=========== ====================================== ==========================================
relu        max(x, 0)                              1 if x > 0 else 0
tanh        tanh x                                 1 − tanh² x
sigmoid     σ(x) = 1/(1 + e^{−x})                  σ(1 − σ)
leaky_relu  x if x > 0 else 0.01·x                 1 if x > 0 else 0.01
elu         x if x > 0 else e^x − 1                1 if x > 0 else e^x
gelu        x·Φ(x)                                 Φ(x) + x·e^{−x²/2}/√(2π)
silu        x·σ(x)                                 σ(1 + x(1 − σ))
softplus    log(1 + e^x) (x above 20: x)           σ(x) (x above 20: 1)
=========== ====================================== ==========================================

Shapes s(x) and their derivatives:

========= ==================== ============================= ==================================
shape     parameters           s(x)                          s'(x)
========= ==================== ============================= ==================================
sigmoid   shift, slope         σ(slope·(x + shift))          slope·s(1 − s)
gaussian  center, width > 0    exp(−(x − center)²/width)     −2(x − center)/width · s
none      —                    1                             0
========= ==================== ============================= ==================================
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Mapping

#: K, the sawtooth's inverse period: the output moves by at most 0.5/K.
DEFAULT_FREQUENCY = 10_000.0

#: g(x) = (xK − ⌊xK⌋ − 0.5)/K ("floor", the paper's) or (|xK − round(xK)| − 0.5)/K ("round").
VARIANTS: tuple[str, ...] = ("floor", "round")

#: The base activations φ, in the order tables and reports list them.
BASES: tuple[str, ...] = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "silu", "softplus")

#: Shapes s(x) → their parameters with the defaults. "none" is the seed's "no s(x)" row (s ≡ 1).
SHAPE_DEFAULTS: "Mapping[str, Mapping[str, float]]" = MappingProxyType({
    "sigmoid": MappingProxyType({"shift": 0.0, "slope": 1.0}),
    "gaussian": MappingProxyType({"center": 0.0, "width": 3.0}),
    "none": MappingProxyType({}),
})


def check_names(table: Iterable[str], names: Iterable[str], what: str) -> None:
    """Raise RuntimeError unless `table` has exactly the keys `names` (an implementation table that
    lost or gained an entry is a programming error, caught on import)."""
    have, want = set(table), set(names)
    if have != want:
        raise RuntimeError(f"{what}: missing {sorted(want - have)}, unexpected {sorted(have - want)}")


__all__ = ["BASES", "DEFAULT_FREQUENCY", "SHAPE_DEFAULTS", "VARIANTS", "check_names"]
