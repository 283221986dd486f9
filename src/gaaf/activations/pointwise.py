r"""Closed-form, overflow-safe pointwise math of GAAF: the forward value and the exact derivative.

This is what the fused op (:mod:`gaaf.activations.fused`) runs, either as plain eager ops or
through ``torch.compile``'d kernels: one implementation table per part, :data:`BASE_MATH` (φ, φ')
and :data:`SHAPE_MATH` (g·s, g'·s + g·s'), keyed by the names of :mod:`.catalog` (which also
tabulates the formulas). Every function here is elementwise: a tensor of any shape in, the same
shape out. With :math:`y = xK`:

.. math::

    \phi_{new}(x)  = \phi(x) + g(x)\,s(x)
    \phi_{new}'(x) = \phi'(x) + g'(x)\,s(x) + g(x)\,s'(x)

    g(x) = (y - \lfloor y \rfloor - 0.5)/K,\quad g' = 1                    \quad\text{("floor")}
    g(x) = (|y - \mathrm{round}(y)| - 0.5)/K,\quad g' = \mathrm{sign}(y - \mathrm{round}(y))  \quad\text{("round")}
    g(x) = 0,\quad g' = 1  \quad\text{("surrogate": K → ∞, value exactly } \phi(x)\text{, plain\_base\_value)}

Finite in, finite out. For a finite x the value and the gradient are finite:

* **x·K overflows** (|x| > finfo.max / K, e.g. |x| > 3.4e34 in float32 at K = 1e4): the naive
  ``y - floor(y)`` is ``inf - inf = NaN``. There y is treated as an integer: the fractional
  part is 0, so g = −0.5/K; g' stays 1 for "floor" (the slope of the formula) and is 0 for
  "round" (sign(0)).
* **x·K beyond float resolution** (|x·K| ≥ 2**m, m the stored mantissa bits: |x| ≥ 2**23/K =
  838.8608 in float32 and 2**52/K ≈ 4.5e11 in float64 at K = 1e4, see
  :func:`gaaf.activations.reference.float_resolution_limit`): every float of magnitude ≥ 2**m is
  an integer, and so is the rounded y = x·K, so floor(y) = round(y) = y and g ≡ −0.5/K exactly;
  the forward is φ(x) − 0.5·s(x)/K and the sawtooth no longer moves the value. For "floor" its
  derivative g' = 1 still acts (the point of GAAF); for "round" g' = sign(0) = 0 there, so the
  round variant adds no gradient beyond the limit. Below it the resolution thins out gradually:
  for 2**(m−j) ≤ |y| < 2**(m−j+1) the fractional part of y is a multiple of 2**−j (just below the
  limit only 0 or 0.5). The overflow rule above simply continues this. (A compiled kernel that
  fuses x·K − ⌊x·K⌋ into one multiply-add keeps x·K unrounded and may differ by one sawtooth step
  there, as anywhere x·K lands within rounding of an integer; CPU kernels are built without
  contraction.)
* **Gaussian shape**: (x − c)² overflows to inf, s = exp(−inf) = 0, and the naive
  s' = s·(−2(x − c)/width) would be 0·inf = NaN; s' is defined as 0 wherever s = 0.
* **Base activations φ and φ'** never overflow, whatever CPU path (SIMD width, libm or SLEEF,
  scalar tail loop) evaluates them. The only assumption is that each elementary function lands
  within a few ulps of its true value and its true range (exp ∈ [0, +inf], tanh ∈ [−1, 1],
  erfc ∈ [0, 2]) and that + − × ÷ are IEEE (correctly rounded, hence monotone). Then:

  - relu, leaky_relu: a select between x, 0 and 0.01·x; |0.01·x| < |x|.
  - tanh, sigmoid: bounded by 1. σ = 1/(1 + e^{−x}): e^{−x} = +inf gives 1/inf = 0, never
    inf/inf; φ' = 1 − tanh² ∈ [0, 1], σ(1 − σ) ∈ [0, 1/4].
  - elu: x for x > 0, else e^x − 1 ∈ [−1, 0]; φ' is a select between 1 and e^x (x ≤ 0).
  - softplus: x above the threshold 20, else log1p(e^x) with e^x ≤ e^20; φ' ≤ 1.
  - silu: x/(1 + e^{−x}) (ATen) divides by a number ≥ 1, and x·σ(x) (its decomposition under
    torch.compile) multiplies by σ = 1/(1 + e^{−x}) ≤ 1: |φ| ≤ |x| either way. In
    φ' = σ(1 + x(1 − σ)), |x(1 − σ)| ≤ |x|, adding 1 cannot round past ±max (1 is far below
    half an ulp of max), and σ ≤ 1 then scales it down.
  - gelu: ATen's x·0.5·(1 + erf(x/√2)) is *not* safe: at x = finfo.max, 0.5·x·2 is exactly max,
    so an erf (or a fused multiply) one ulp off gives inf, and whether it does depends on the
    code path (torch 2.13, float32: inf at x ≥ 3.3895e38 in the vectorized loop under every
    ATEN_CPU_CAPABILITY, finite for a one-element tensor). Here, with the saturation point
    S = 40 and c = clamp(x, −S, S),

        φ(x)  = x                 for x > S,   c·Φ(c) otherwise,       Φ(c) = ½·erfc(−c/√2)
        φ'(x) = Φ(c) + c·e^{−c²/2}/√(2π)

    erfc and exp only see |arguments| ≤ 40/√2 and 800, |c·Φ(c)| ≤ 40 (plus ulps), and a huge x
    only passes through the select. The clamp changes nothing: for x > 40 the true Φ(x) and
    φ'(x) round to 1 in float64 (1 − Φ(8.3) < 2⁻⁵⁴ already), and for x < −40 the true |φ(x)|
    and |φ'(x)| are below e^{−800}, which rounds to 0 even among float64 subnormals (the same
    0 that c = −40 gives). erfc rather than 1 + erf: no cancellation for x < 0, so φ(x) keeps
    its relative accuracy where it is tiny (ATen's float32 gelu is ~2e−7-absolute accurate
    only: its gelu(−5) is 17 % off).

  tests/test_activations_bases.py checks every base and slope at the edges of every dtype against
  50-digit arithmetic, and tests/test_cpu_capabilities.py repeats that under each
  ATEN_CPU_CAPABILITY the machine has.

Inputs in float16/bfloat16 (or any float type narrower than float32) are computed in float32
and the result is cast back to the input's dtype (what that leaves of GAAF: :mod:`.precision`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Union

import torch
import torch.nn.functional as F

from .catalog import BASES, SHAPE_DEFAULTS, check_names

if TYPE_CHECKING:  # pragma: no cover
    from .spec import GAAFSpec

Tensor = torch.Tensor
Num = Union[Tensor, float]  # a tensor, or a Python number standing for a constant tensor
Params = Mapping[str, float]

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_LEAKY_SLOPE = 0.01  # F.leaky_relu's default negative_slope
_SOFTPLUS_THRESHOLD = 20.0  # F.softplus's default threshold (beta 1)
_GELU_SATURATION = 40.0  # |x| beyond which gelu(x) is x (x > 0) or rounds to −0 (x < 0), any dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the math runs in: float32 for half types, otherwise the dtype itself."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


# --------------------------------------------------------------------------- base activations φ
class BaseMath(NamedTuple):
    """One base: ``value(x)`` = φ(x) and ``slope_plus(x, rest)`` = φ'(x) + rest, with φ' exactly as
    PyTorch's backward kernels define it (formulas in :mod:`.catalog`). Adding ``rest`` inside
    lets the piecewise bases pick between two sums with one ``where`` (no constant tensors needed,
    so the dtype is always x's)."""

    value: Callable[[Tensor], Tensor]
    slope_plus: Callable[[Tensor, Tensor], Tensor]


def _normal_cdf(c: Tensor) -> Tensor:
    """Φ(c) = ½·erfc(−c/√2), for |c| ≤ 40 (see the module docstring)."""
    return torch.erfc(c * -_SQRT1_2) * 0.5


def _gelu(x: Tensor) -> Tensor:
    c = torch.clamp(x, -_GELU_SATURATION, _GELU_SATURATION)
    return torch.where(x > _GELU_SATURATION, x, c * _normal_cdf(c))


def _gelu_slope_plus(x: Tensor, rest: Tensor) -> Tensor:
    # Φ(c) + c·pdf(c) is exactly 1 at c = 40 and 0 at c = −40: no select needed for |x| > 40
    c = torch.clamp(x, -_GELU_SATURATION, _GELU_SATURATION)
    pdf = torch.exp(-0.5 * (c * c)) * _INV_SQRT_2PI
    return rest + (_normal_cdf(c) + c * pdf)


def _plain_gelu(x: Tensor) -> Tensor:
    """F.gelu(x) itself, but x above 40 (there ATen's gelu is x too, or inf near +max, the only place
    it overflows: x·0.5·(1 + erf) ≤ |x| for x < 0): bitwise ATen's gelu wherever that is finite."""
    return torch.where(x > _GELU_SATURATION, x, F.gelu(x))


def _tanh_slope_plus(x: Tensor, rest: Tensor) -> Tensor:
    t = torch.tanh(x)
    return rest + (1.0 - t * t)


def _sigmoid_slope_plus(x: Tensor, rest: Tensor) -> Tensor:
    sg = torch.sigmoid(x)
    return rest + sg * (1.0 - sg)


def _silu_slope_plus(x: Tensor, rest: Tensor) -> Tensor:
    sg = torch.sigmoid(x)
    return rest + sg * (1.0 + x * (1.0 - sg))


#: φ and φ' + rest of every base, with PyTorch's default parameters (gelu in the overflow-safe
#: form of the module docstring). elu's exp(x) of a large positive x is inf, but only in the
#: branch that `where` drops; relu's bool x > 0 adds as 1.0 / 0.0 in rest's dtype.
BASE_MATH: "Mapping[str, BaseMath]" = {
    "relu": BaseMath(torch.relu, lambda x, rest: rest + (x > 0)),
    "tanh": BaseMath(torch.tanh, _tanh_slope_plus),
    "sigmoid": BaseMath(torch.sigmoid, _sigmoid_slope_plus),
    "leaky_relu": BaseMath(lambda x: F.leaky_relu(x, _LEAKY_SLOPE),
                           lambda x, rest: torch.where(x > 0, rest + 1.0, rest + _LEAKY_SLOPE)),
    "elu": BaseMath(F.elu, lambda x, rest: torch.where(x > 0, rest + 1.0, rest + torch.exp(x))),
    "gelu": BaseMath(_gelu, _gelu_slope_plus),
    "silu": BaseMath(F.silu, _silu_slope_plus),
    "softplus": BaseMath(F.softplus,
                         lambda x, rest: torch.where(x > _SOFTPLUS_THRESHOLD, rest + 1.0, rest + torch.sigmoid(x))),
}
check_names(BASE_MATH, BASES, "pointwise.BASE_MATH")


def _lookup(table: "Mapping[str, Any]", name: str, kind: str) -> Any:
    """table[name], or ValueError naming what is unknown (the spec validated names long before)."""
    found = table.get(name)
    if found is None:
        raise ValueError(f"unknown {kind} {name!r}")
    return found


def _base(base: str) -> BaseMath:
    return _lookup(BASE_MATH, base, "base activation")


def base_value(x: Tensor, base: str) -> Tensor:
    """φ(x) (see :data:`BASE_MATH`)."""
    return _base(base).value(x)


def plain_base_value(x: Tensor, base: str) -> Tensor:
    """φ(x) as PyTorch's own op (nn.ReLU, nn.GELU, ...) computes it, bitwise, on x in its own dtype:
    the surrogate's forward. :data:`BASE_MATH`'s value but for gelu (:func:`_plain_gelu`)."""
    return _plain_gelu(x) if base == "gelu" else _base(base).value(x)


def base_slope_plus(x: Tensor, base: str, rest: Tensor) -> Tensor:
    """φ'(x) + rest (see :data:`BASE_MATH`)."""
    return _base(base).slope_plus(x, rest)


# --------------------------------------------------------------------------- sawtooth g
def sawtooth_and_slope(x: Tensor, frequency: float, variant: str) -> "tuple[Num, Num]":
    """(g(x), g'(x)), overflow-safe: where x·K is ±inf the fractional part counts as 0.

    There ``y - floor(y)`` is ``inf - inf = NaN`` (a finite y never gives NaN), so NaN → 0 is the
    guard, written ``where(v == v, v, 0)``: two eager ops, and a vectorized compare when compiled
    (inductor's CPU isnan/isinf run one element at a time). A NaN input still gives a NaN output,
    through φ(NaN) and s(NaN). g = c·(1/K) with c from :func:`centered_sawtooth_and_slope`: a
    multiply by the rounded 1/K rather than a division (relative error ~1e-16, and |g| ≤ 0.5/K).
    """
    c, dg = centered_sawtooth_and_slope(x, frequency, variant)
    return c * (1.0 / frequency), dg


def centered_sawtooth_and_slope(x: Tensor, frequency: float, variant: str) -> "tuple[Num, Num]":
    """(c, g'(x)) with c = K·g(x) ∈ [−0.5, 0.5): the sawtooth before the 1/K scale, so callers
    can fold 1/K into another constant (one multiply fewer per element)."""
    if variant == "surrogate":  # K → ∞: g ≡ 0 (|g| ≤ 0.5/K), g' = 1
        return 0.0, 1.0
    y = x * frequency
    if variant == "floor":
        return _nan_to_zero(y - torch.floor(y)) - 0.5, 1.0
    if variant == "round":
        d = _nan_to_zero(y - torch.round(y))  # in [−0.5, 0.5]
        return torch.abs(d) - 0.5, torch.sign(d)
    raise ValueError(f"unknown variant {variant!r}")


def _nan_to_zero(v: Tensor) -> Tensor:
    return torch.where(v == v, v, 0.0)  # NaN is the only value unequal to itself


# --------------------------------------------------------------------------- shape s
class ShapeMath(NamedTuple):
    """One named shape, given its parameters p:

    * ``times_g(x, g, p)`` = g(x)·s(x), the forward's term;
    * ``terms(x, c, g', K, p)`` = g'(x)·s(x) + g(x)·s'(x) with g = c/K, the backward's terms,
      factored to save multiplies, with the 1/K of g folded into the constant multiplying c;
    * ``value(x, p)`` = s(x), the surrogate's term (g ≡ 0, g' = 1).

    Python numbers stand for constants (s ≡ 1/2 for slope 0, s ≡ 1 for "none").
    """

    times_g: Callable[[Tensor, Tensor, Params], Num]
    terms: Callable[[Tensor, Tensor, Num, float, Params], Num]
    value: Callable[[Tensor, Params], Num]


def _neg_affine(x: Tensor, slope: float, shift: float) -> Tensor:
    """−slope·(x + shift), one op where slope is 1."""
    if slope == 1.0:
        return (-shift) - x
    return (x + shift if shift != 0.0 else x) * (-slope)


def _sigmoid_denominator(x: Tensor, slope: float, shift: float) -> Tensor:
    """1 + e^{−slope·(x + shift)}: the sigmoid shape's compiled form is its reciprocal."""
    return 1.0 + torch.exp(_neg_affine(x, slope, shift))


def _sigmoid_s(x: Tensor, p: Params) -> Num:
    """s = σ(a(x + b)), a = slope, b = shift; 1/2 for a = 0 (there 0·(x + b) is NaN where x + b
    overflows). Compiled as 1/(1 + e^{−z}) with −z formed directly; eager as torch.sigmoid, skipping
    exact no-ops (each eager op is a kernel)."""
    slope, shift = p["slope"], p["shift"]
    if slope == 0.0:
        return 0.5
    if torch.compiler.is_compiling():
        return torch.reciprocal(_sigmoid_denominator(x, slope, shift))
    z = x + shift if shift != 0.0 else x
    return torch.sigmoid(slope * z if slope != 1.0 else z)


def _sigmoid_times_g(x: Tensor, g: Tensor, p: Params) -> Num:
    """g·s. Compiled, g / (1 + e^{−z}): the sigmoid's own division makes the product (one
    division and one multiply fewer per element than g·σ); eager, g·σ(z): fewer kernels."""
    if p["slope"] != 0.0 and torch.compiler.is_compiling():
        return g / _sigmoid_denominator(x, p["slope"], p["shift"])
    return g * _sigmoid_s(x, p)


def _sigmoid_terms(x: Tensor, c: Tensor, dg: Num, frequency: float, p: Params) -> Num:
    """s·(g' + a·g·(1 − s)), from s' = a·s(1 − s)."""
    slope = p["slope"]
    if slope == 0.0:  # s ≡ 1/2, s' = 0
        return 0.5 * dg
    s = _sigmoid_s(x, p)
    return s * (dg + (c * (slope / frequency)) * (1.0 - s))


def _gaussian_s(x: Tensor, p: Params) -> "tuple[Tensor, Tensor]":
    """(d, s) with d = x − center and s = exp(−d²/width), a multiply by the rounded −1/width."""
    center = p["center"]
    d = x - center if center != 0.0 else x
    return d, torch.exp((d * d) * (-1.0 / p["width"]))


def _gaussian_terms(x: Tensor, c: Tensor, dg: Num, frequency: float, p: Params) -> Num:
    """s·(g' − 2g·d/width), from s' = −2d/width·s; where s = 0 the product would be 0·inf = NaN
    for d = ±inf, so s itself (0, or NaN for a NaN x) is kept."""
    d, s = _gaussian_s(x, p)
    return torch.where(s > 0, s * (dg + (c * (-2.0 / (p["width"] * frequency))) * d), s)


#: g·s and g'·s + g·s' of every named shape (formulas in :mod:`.catalog`).
SHAPE_MATH: "Mapping[str, ShapeMath]" = {
    "sigmoid": ShapeMath(_sigmoid_times_g, _sigmoid_terms, _sigmoid_s),
    "gaussian": ShapeMath(lambda x, g, p: g * _gaussian_s(x, p)[1], _gaussian_terms,
                          lambda x, p: _gaussian_s(x, p)[1]),
    "none": ShapeMath(lambda x, g, p: g, lambda x, c, dg, frequency, p: dg, lambda x, p: 1.0),
}
check_names(SHAPE_MATH, SHAPE_DEFAULTS, "pointwise.SHAPE_MATH")


def _shape(shape: str) -> ShapeMath:
    return _lookup(SHAPE_MATH, shape, "shape")


def callable_shape_value(x: Tensor, shape: Callable[[Tensor], Tensor]) -> Tensor:
    """s(x) from a user callable, checked to be a tensor broadcastable to x and cast to x's dtype."""
    s = shape(x)
    if not isinstance(s, Tensor):
        raise ValueError(f"shape callable {shape!r} must return a tensor, got {type(s).__name__}")
    if s.shape != x.shape:
        try:
            s = torch.broadcast_to(s, x.shape)
        except RuntimeError:
            raise ValueError(
                f"shape callable {shape!r} returned shape {tuple(s.shape)}, "
                f"which does not broadcast to the input's {tuple(x.shape)}"
            ) from None
    return s.to(x.dtype)


# --------------------------------------------------------------------------- forward / backward
def _upcast(t: Tensor) -> Tensor:
    return t.to(compute_dtype(t.dtype))


def _fwd(x: Tensor, spec: "GAAFSpec") -> Tensor:
    """φ(x) + g(x)·s(x), in float32 for half inputs, returned in x's dtype.

    Plain differentiable ops: autograd through it gives the exact gradient too (floor and round
    have derivative 0, the NaN guard passes it through), which is how a callable shape is
    differentiated inside torch.compile. The surrogate's value is φ(x) alone (for a form autograd
    differentiates to φ' + s see :func:`gaaf.activations.fused._fwd_autograd`).
    """
    if spec.variant == "surrogate":
        return plain_base_value(x, spec.base)
    xc = _upcast(x)
    g, _ = sawtooth_and_slope(xc, spec.frequency, spec.variant)
    if callable(spec.shape):
        gs: Num = g * callable_shape_value(xc, spec.shape)
    else:
        gs = _shape(spec.shape).times_g(xc, g, spec.shape_params)
    return (base_value(xc, spec.base) + gs).to(x.dtype)


def _bwd(x: Tensor, grad: Tensor, spec: "GAAFSpec") -> Tensor:
    """grad · (φ'(x) + g'(x)·s(x) + g(x)·s'(x)), in x's dtype.

    For a callable shape, s and the g·s' term are recomputed with autograd on a detached copy
    of x: the term is the vector-Jacobian product of s with grad·g, which is exact for any
    differentiable callable (for a pointwise one it equals grad·g·s').
    """
    xc, gc = _upcast(x), grad.to(compute_dtype(x.dtype))
    if callable(spec.shape):
        g, dg = sawtooth_and_slope(xc, spec.frequency, spec.variant)
        with torch.enable_grad():
            xd = xc.detach().requires_grad_(True)
            s_t = callable_shape_value(xd, spec.shape)
        total = base_slope_plus(xc, spec.base, _as_tensor(dg * s_t.detach(), xc))
        out = gc * total
        if s_t.requires_grad and spec.variant != "surrogate":  # the surrogate's g ≡ 0: no g·s' term
            (vjp,) = torch.autograd.grad(s_t, xd, gc * g, allow_unused=True)
            if vjp is not None:
                out = out + vjp
        return out.to(x.dtype)
    if spec.variant == "surrogate":  # g ≡ 0, g' = 1: φ' + s
        terms = _shape(spec.shape).value(xc, spec.shape_params)
    else:
        c, dg = centered_sawtooth_and_slope(xc, spec.frequency, spec.variant)  # g = c/K
        terms = _shape(spec.shape).terms(xc, c, dg, spec.frequency, spec.shape_params)
    return (gc * base_slope_plus(xc, spec.base, _as_tensor(terms, xc))).to(x.dtype)


def _as_tensor(v: Num, like: Tensor) -> Tensor:
    """A Python number as a constant tensor shaped like `like` (shape "none" + variant "floor")."""
    return v if isinstance(v, Tensor) else torch.full_like(like, v)


__all__ = [
    "BASE_MATH", "SHAPE_MATH", "BaseMath", "ShapeMath", "compute_dtype", "base_value", "base_slope_plus",
    "sawtooth_and_slope", "centered_sawtooth_and_slope", "callable_shape_value", "plain_base_value", "_fwd", "_bwd",
]
