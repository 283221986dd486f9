r"""GAAF for Keras 3: a layer written with ``keras.ops`` only, so it runs on the JAX, TensorFlow and
PyTorch backends and matches :mod:`gaaf.activations` in numbers and gradients.

    import gaaf.keras
    act = gaaf.keras.GAAF("relu", shape="sigmoid", shift=-1.0)      # same arguments as gaaf.GAAF
    act = gaaf.keras.get_activation("gaaf_tanh")                      # same names as gaaf.get_activation

The forward is :math:`\phi(x) + g(x)\,s(x)` with the sawtooth (see :mod:`gaaf.activations.reference`)

.. math::

    g(x) = (r - 0.5)/K,\quad r = xK - \lfloor xK \rfloor      \quad\text{("floor")}

    g(x) = (|r| - 0.5)/K,\quad r = xK - \mathrm{round}(xK)   \quad\text{("round")}

floor and round must have zero derivative, so :math:`r` is written as

.. math::  r = \mathrm{sg}\big(xK - \lfloor xK \rfloor\big) + K\,(x - \mathrm{sg}(x))

(sg = ``ops.stop_gradient``): the first term carries the value, the second is exactly 0 in value
for finite x and has derivative K, so autodiff gives :math:`dr/dx = K` — the same derivative as the
naive composition, on every backend. Where :math:`xK` overflows (|x| > 3.4e38/K in float32) the frac
part is taken as 0, so g = −0.5/K and g' stays 1 ("floor") or 0 ("round"): finite in, finite out,
exactly like the fused PyTorch op. Variant "surrogate" (K → ∞: g ≡ 0, g' = 1) is written

.. math::  \phi(x) + \big(x - \mathrm{sg}(x)\big)\,\mathrm{sg}\big(s(x)\big)

whose value is φ(x) (plus an exact 0) and whose gradient is φ'(x) + s(x), as the PyTorch op's.
:math:`\lfloor y \rfloor` is computed from ``ops.round``
(``round(y) − [round(y) > y]``): Keras's torch backend computes ``ops.floor`` of a float64 tensor
in float32, which is wrong for |y| > 2²⁴ and inf beyond 3.4e38.

The bases are overflow-safe for the reasons given in :mod:`gaaf.activations.pointwise`, and gelu
uses the same form as there, x for x > 40 and c·Φ(c) with c = clip(x, −40, 40), so that no
backend's gelu (PyTorch's float32 gelu is inf at x ≥ 3.3895e38) and no erf ever sees a huge x;
autodiff through the clip and the select gives Φ(c) + c·φ(c) and 1, never 0·inf. Φ here is
½(1 + erf(c/√2)) (``ops.erfc`` is not in every Keras 3): the same to 1e−15 absolutely.

Where backends differ, the layer spells out PyTorch's choice so that every backend gives the same
numbers and gradients: leaky_relu is ``where(x > 0, x, 0.01·x)`` (JAX's has slope 1 at x = 0),
softplus is x above 20 (PyTorch's threshold; JAX's is the exact log(1 + e^x), 2e−9 away), the
round variant's |r| is r·sg(sign r) (derivative sign r, 0 at r = 0; JAX's |r|' is 1 there), and
where ``ops.tanh`` returns float32 for float64 input (Keras 3's JAX backend) tanh is
−expm1(−2a)/(2 + expm1(−2a)) with a = |x|, signed back (a few ulp, derivative 1 − tanh²).

Keras is imported when this module is imported (``import gaaf`` never imports it). Of gaaf it
imports only the pure-Python table of names (:mod:`gaaf.activations.catalog`), the spec and the
presets, never PyTorch itself: on the JAX or TensorFlow backend torch is not loaded.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from .activations.catalog import BASES, DEFAULT_FREQUENCY, SHAPE_DEFAULTS, VARIANTS, check_names
from .activations.presets import builtin_activations, resolve_activation  # the PyTorch registry's names
from .activations.spec import GAAFSpec

try:
    import keras
    from keras import ops
except ModuleNotFoundError as _e:  # keras itself missing, or its backend package missing
    if _e.name == "keras" or (_e.name or "").startswith("keras."):
        raise ImportError("gaaf.keras needs Keras 3: pip install gaaf[keras]") from _e
    _backend = os.environ.get("KERAS_BACKEND", "tensorflow (the default)")
    raise ImportError(
        f"Keras is installed but its backend {_backend} could not be imported ({_e.name} missing); "
        "set KERAS_BACKEND to torch, jax or tensorflow with that package installed"
    ) from _e

if int(keras.__version__.split(".")[0]) < 3:
    raise ImportError(f"gaaf.keras needs Keras 3, found keras {keras.__version__}: pip install gaaf[keras]")

_GELU_SATURATION = 40.0  # as in gaaf.activations.pointwise: gelu(x) = x above, rounds to −0 below −40
_SQRT1_2 = 0.7071067811865476


def _gelu(x: Any) -> Any:
    """gelu(x) = x·Φ(x), computed as x for x > 40 and c·Φ(c), c = clip(x, ±40), otherwise."""
    c = ops.clip(x, -_GELU_SATURATION, _GELU_SATURATION)
    cdf = 0.5 * (1.0 + ops.erf(c * _SQRT1_2))
    return ops.where(ops.greater(x, _GELU_SATURATION), x, c * cdf)


def _floor(y: Any) -> Any:
    """⌊y⌋ in y's dtype on every backend (see the module docstring), for finite y."""
    r = ops.round(y)
    return r - ops.cast(ops.greater(r, y), r.dtype)


def _tanh(x: Any) -> Any:
    """tanh x in x's dtype: ``ops.tanh``, or where that drops float64 to float32 (Keras's JAX
    backend) −expm1(−2a)/(2 + expm1(−2a)), a = |x| (a select, so the derivative at 0 is 1), signed back."""
    y = ops.tanh(x)
    if keras.backend.standardize_dtype(y.dtype) == keras.backend.standardize_dtype(x.dtype):
        return y
    positive = ops.greater_equal(x, 0.0)
    e = ops.expm1(-2.0 * ops.where(positive, x, -x))  # in [−1, 0]: no overflow on either branch
    magnitude = -e / (2.0 + e)
    return ops.where(positive, magnitude, -magnitude)


_SOFTPLUS_THRESHOLD = 20.0  # PyTorch's: softplus(x) = x above it


def _softplus(x: Any) -> Any:
    """log(1 + e^x), and x itself for x > 20 (PyTorch's threshold), derivative σ(x) and 1."""
    above = ops.greater(x, _SOFTPLUS_THRESHOLD)
    # softplus(0) where unused, so neither branch overflows (ops.minimum(x, 20.0) would take float64 to float32)
    return ops.where(above, x, ops.softplus(ops.where(above, ops.zeros_like(x), x)))


#: φ written with keras.ops, each with PyTorch's default parameters (Keras's defaults differ for
#: leaky_relu (0.2) and ops.gelu (tanh approximation)) and PyTorch's choices where backends differ.
_BASES: dict[str, Callable[[Any], Any]] = {
    "relu": ops.relu,
    "tanh": _tanh,
    "sigmoid": ops.sigmoid,
    "leaky_relu": lambda x: ops.where(ops.greater(x, 0.0), x, 0.01 * x),  # slope 0.01 at x = 0, as PyTorch
    "elu": lambda x: ops.elu(x, alpha=1.0),
    "gelu": _gelu,  # exact (erf) gelu, in an overflow-safe form (module docstring)
    "silu": ops.silu,
    "softplus": _softplus,
}
check_names(_BASES, BASES, "gaaf.keras._BASES")

#: keyword arguments that belong to keras.layers.Layer rather than to the shape function
_LAYER_KWARGS = frozenset({"name", "dtype", "trainable", "autocast", "activity_regularizer", "input_shape", "input_dim"})


def sawtooth(x: Any, frequency: float = DEFAULT_FREQUENCY, variant: str = "floor") -> Any:
    """g(x) with keras.ops: value as the naive formula, derivative 1 ("floor") or sign(r) ("round");
    "surrogate": x − sg(x), value 0 and derivative 1.

    x: any shape, floating dtype; the result has x's shape and dtype.
    """
    if variant == "surrogate":
        return x - ops.stop_gradient(x)
    y = x * frequency
    finite = ops.isfinite(y)
    # y_safe: x·K with overflowed entries replaced by 0 (an integer), so their frac part is 0 and
    # the forward never forms inf − inf.
    y_safe = ops.where(finite, y, ops.zeros_like(y))
    if variant == "floor":
        frac = y_safe - _floor(y_safe)
    elif variant == "round":
        frac = y_safe - ops.round(y_safe)
    else:
        raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    # value: frac exactly (adding an exact 0); derivative: K, even where x·K overflowed
    r = ops.stop_gradient(frac) + (x - ops.stop_gradient(x)) * frequency
    if variant == "round":
        r = r * ops.stop_gradient(ops.sign(r))  # |r|, derivative sign(r): 0 at r = 0 on every backend
    return (r - 0.5) / frequency


def shape_value(x: Any, spec: GAAFSpec) -> Any:
    """s(x) for the spec's named shape, or its callable applied to x."""
    if callable(spec.shape):
        return spec.shape(x)
    p = spec.shape_params
    if spec.shape == "sigmoid":
        return ops.sigmoid(p["slope"] * (x + p["shift"]))
    if spec.shape == "gaussian":
        return ops.exp(-ops.square(x - p["center"]) / p["width"])
    if spec.shape == "none":
        return ops.ones_like(x)
    raise ValueError(f"unknown shape {spec.shape!r}; choose one of: {', '.join(sorted(SHAPE_DEFAULTS))}")


def gaaf(x: Any, spec: GAAFSpec) -> Any:
    """φ(x) + g(x)·s(x) for a validated spec, in keras.ops (elementwise; any shape).

    float16/bfloat16 inputs are computed in float32 and returned in their own dtype, as the
    PyTorch op does: in half precision x·K (K = 1e4) is an integer, so g ≡ −0.5/K, for |x| ≳ 0.2.
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    xc = ops.cast(x, "float32") if dtype in ("float16", "bfloat16") else x
    s = shape_value(xc, spec)
    if spec.variant == "surrogate":  # g·s' vanishes with g: s carries no gradient
        s = ops.stop_gradient(s)
    y = _BASES[spec.base](xc) + sawtooth(xc, spec.frequency, spec.variant) * s
    return ops.cast(y, dtype) if xc is not x else y


@keras.saving.register_keras_serializable(package="gaaf")
class GAAF(keras.layers.Layer):
    """φ(x) + g(x)·s(x), the Keras twin of :class:`gaaf.GAAF` (same arguments, same errors).

    Args:
        base: φ: relu, tanh, sigmoid, leaky_relu, elu, gelu, silu, softplus (PyTorch's defaults),
            or its preset name (``"gaaf_relu"`` is the same as ``"relu"``).
        shape: "sigmoid" (sigmoid(slope·(x + shift))), "gaussian" (exp(−(x − center)²/width)),
            "none" (s ≡ 1), or a Keras-serializable callable x → s(x) written with keras.ops
            (register it with ``@keras.saving.register_keras_serializable``). None (the default):
            the base's own shape, with the base's defaults, as in :class:`gaaf.GAAF`.
        frequency: K, the sawtooth's inverse period (default 10,000). Output moves by ≤ 0.5/K.
        variant: "floor" (paper), "round" (seed's ex13) or "surrogate" (K → ∞: forward φ(x),
            gradient φ'(x) + s(x)).
        **kwargs: the shape's parameters (shift, slope / center, width) and the usual Layer
            arguments (name, dtype, trainable, ...).
    """

    def __init__(
        self,
        base: str = "relu",
        shape: "str | Callable[[Any], Any] | None" = None,
        frequency: float = DEFAULT_FREQUENCY,
        variant: str = "floor",
        **kwargs: Any,
    ) -> None:
        layer_kwargs = {k: v for k, v in kwargs.items() if k in _LAYER_KWARGS}
        shape_params = {k: v for k, v in kwargs.items() if k not in _LAYER_KWARGS}
        if isinstance(shape, dict):  # a serialized callable, from get_config
            shape = keras.saving.deserialize_keras_object(shape)
        spec = GAAFSpec.build(base, shape, frequency, variant, **shape_params)  # ValueError as in PyTorch
        super().__init__(**layer_kwargs)
        self.spec = spec
        self.supports_masking = True  # elementwise: a mask passes through unchanged

    def call(self, inputs: Any) -> Any:
        return gaaf(inputs, self.spec)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        spec = self.spec
        shape = spec.shape if isinstance(spec.shape, str) else keras.saving.serialize_keras_object(spec.shape)
        return {
            **super().get_config(),
            "base": spec.base,
            "shape": shape,
            "frequency": spec.frequency,
            "variant": spec.variant,
            **dict(spec.shape_params),
        }

    def __repr__(self) -> str:
        return f"<gaaf.keras.GAAF name={self.name!r} {self.spec.describe()}>"


#: plain φ as built-in (serializable) Keras layers with PyTorch's default parameters
_PLAIN: dict[str, Callable[[], Any]] = {
    "relu": lambda: keras.layers.ReLU(),
    "tanh": lambda: keras.layers.Activation("tanh"),
    "sigmoid": lambda: keras.layers.Activation("sigmoid"),
    "leaky_relu": lambda: keras.layers.LeakyReLU(negative_slope=0.01),
    "elu": lambda: keras.layers.ELU(alpha=1.0),
    "gelu": lambda: keras.layers.Activation("gelu"),  # keras.activations.gelu: exact erf form
    "silu": lambda: keras.layers.Activation("silu"),
    "softplus": lambda: keras.layers.Activation("softplus"),
}
check_names(_PLAIN, BASES, "gaaf.keras._PLAIN")


def list_activations() -> list[str]:
    """Names :func:`get_activation` accepts, sorted (the PyTorch registry's built-in names)."""
    return builtin_activations()


def get_activation(name: "str | None", **params: Any) -> Any:
    """A fresh Keras activation layer by the names of :func:`gaaf.get_activation`.

    ``get_activation("gaaf_relu", shift=-1.0)``, ``get_activation("relu")``, ``get_activation(None)``
    (Identity). A shape other than the base's own takes that shape's defaults, as in the PyTorch registry.
    """
    if name is None:
        if params:
            raise ValueError(f"activation None takes no parameters, got {', '.join(sorted(params))}")
        return keras.layers.Identity()
    if not isinstance(name, str):
        raise ValueError(f"activation must be a name or None; got {name!r}")
    kind, value = resolve_activation(name, **params)  # ValueError as in PyTorch
    return _PLAIN[value]() if kind == "plain" else GAAF(**value)


__all__ = ["GAAF", "gaaf", "get_activation", "list_activations", "sawtooth", "shape_value"]
