r"""The one table of what GAAF is made of: base activations, shapes s(x) with their parameters and
defaults, sawtooth variants (:data:`VARIANTS`) and the default frequency. Pure Python (no PyTorch): the spec, the
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

Shapes s(x), their parameters with the defaults, and their derivatives:

========= ========================== ============================= ==============================
shape     parameters (defaults)      s(x)                          s'(x)
========= ========================== ============================= ==============================
sigmoid   shift 0, slope 1           σ(slope·(x + shift))          slope·s(1 − s)
gaussian  center 0, width 3 (> 0)    exp(−(x − center)²/width)     −2(x − center)/width · s
none      —                          1                             0
========= ========================== ============================= ==============================

Each base has its own shape with its own values (:data:`BASE_DEFAULTS`): ``GAAF(base)`` with no
shape arguments is the ``gaaf_<base>`` preset. Parameters given explicitly always win; a shape
other than the base's own gets that shape's defaults above.

=================================================== ==========================================
base                                                own shape and parameters
=================================================== ==========================================
relu, leaky_relu, elu, gelu, silu, softplus         sigmoid, shift 4 (slope 1)
tanh                                                gaussian, width 3 (center 0)
sigmoid                                             gaussian, width 12 (center 0)
=================================================== ==========================================

Shift 4 is the seed's code (its sweep found −1 best); width 3 the seed's exp(−x²/3) for tanh;
width 12 is that Gaussian in sigmoid's own coordinates: sigmoid(x) = (1 + tanh(x/2))/2, so
exp(−(x/2)²/3) = exp(−x²/12), which adds gradient where sigmoid is steep and fades where it
saturates, as width 3 does for tanh.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Mapping

#: K, the sawtooth's inverse period: the output moves by at most 0.5/K.
DEFAULT_FREQUENCY = 10_000.0

#: g(x) = (xK − ⌊xK⌋ − 0.5)/K ("floor", the paper's) or (|xK − round(xK)| − 0.5)/K ("round");
#: "surrogate" is their K → ∞ limit, g ≡ 0 with g' = 1: forward exactly φ(x), backward φ'(x) + s(x)
#: (|g| ≤ 0.5/K takes g·s' with it). It tests whether GAAF is just a surrogate gradient.
VARIANTS: tuple[str, ...] = ("floor", "round", "surrogate")

#: The base activations φ, in the order tables and reports list them.
BASES: tuple[str, ...] = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "silu", "softplus")

#: Shapes s(x) → their parameters with the defaults. "none" is the seed's "no s(x)" row (s ≡ 1).
SHAPE_DEFAULTS: "Mapping[str, Mapping[str, float]]" = MappingProxyType({
    "sigmoid": MappingProxyType({"shift": 0.0, "slope": 1.0}),
    "gaussian": MappingProxyType({"center": 0.0, "width": 3.0}),
    "none": MappingProxyType({}),
})

_RELU_LIKE: "tuple[str, Mapping[str, float]]" = ("sigmoid", MappingProxyType({"shift": 4.0}))

#: Each base → its own shape and the values that differ from that shape's defaults (module docstring).
BASE_DEFAULTS: "Mapping[str, tuple[str, Mapping[str, float]]]" = MappingProxyType({
    "relu": _RELU_LIKE,
    "tanh": ("gaussian", MappingProxyType({"width": 3.0})),
    "sigmoid": ("gaussian", MappingProxyType({"width": 12.0})),
    "leaky_relu": _RELU_LIKE,
    "elu": _RELU_LIKE,
    "gelu": _RELU_LIKE,
    "silu": _RELU_LIKE,
    "softplus": _RELU_LIKE,
})

#: ``gaaf_<base>``: the preset names; each is GAAF on that base with its own defaults.
PRESET_PREFIX = "gaaf_"


def base_of(name: object) -> "str | None":
    """The base a base or preset name stands for: "relu" and "gaaf_relu" → "relu"; None otherwise."""
    if not isinstance(name, str):
        return None
    if name.startswith(PRESET_PREFIX):
        name = name[len(PRESET_PREFIX):]
    return name if name in BASES else None


def default_shape(base: str) -> str:
    """The shape GAAF on `base` uses when none is given."""
    return BASE_DEFAULTS[base][0]


def shape_defaults(base: str, shape: str) -> "dict[str, float]":
    """`shape`'s parameters with their defaults for `base`: the shape's own defaults, overridden by
    the base's values where `shape` is the base's own shape (``shape_defaults("relu", "sigmoid")``
    is shift 4, slope 1; ``shape_defaults("relu", "gaussian")`` is center 0, width 3)."""
    own_shape, own = BASE_DEFAULTS[base]
    return {**SHAPE_DEFAULTS[shape], **(own if shape == own_shape else {})}


def check_names(table: Iterable[str], names: Iterable[str], what: str) -> None:
    """Raise RuntimeError unless `table` has exactly the keys `names` (an implementation table that
    lost or gained an entry is a programming error, caught on import)."""
    have, want = set(table), set(names)
    if have != want:
        raise RuntimeError(f"{what}: missing {sorted(want - have)}, unexpected {sorted(have - want)}")


check_names(BASE_DEFAULTS, BASES, "catalog.BASE_DEFAULTS")

__all__ = [
    "BASES", "BASE_DEFAULTS", "DEFAULT_FREQUENCY", "PRESET_PREFIX", "SHAPE_DEFAULTS", "VARIANTS", "base_of",
    "check_names", "default_shape", "shape_defaults",
]
