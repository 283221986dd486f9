r"""Closed-form, overflow-safe pointwise math of GAAF: the forward value and the exact derivative.

This is what the fused op (:mod:`gaaf.activations.fused`) runs, either as plain eager ops or
through ``torch.compile``'d kernels. Every function here is elementwise: a tensor of any shape in,
the same shape out. With :math:`y = xK`:

.. math::

    \phi_{new}(x)  = \phi(x) + g(x)\,s(x)
    \phi_{new}'(x) = \phi'(x) + g'(x)\,s(x) + g(x)\,s'(x)

    g(x) = (y - \lfloor y \rfloor - 0.5)/K,\quad g' = 1                    \quad\text{("floor")}
    g(x) = (|y - \mathrm{round}(y)| - 0.5)/K,\quad g' = \mathrm{sign}(y - \mathrm{round}(y))  \quad\text{("round")}

Finite in, finite out. For a finite x the value and the gradient are finite:

* **x·K overflows** (|x| > finfo.max / K, e.g. |x| > 3.4e34 in float32 at K = 1e4): the naive
  ``y - floor(y)`` is ``inf - inf = NaN``. There y is treated as an integer: the fractional
  part is 0, so g = −0.5/K; g' stays 1 for "floor" (the slope of the formula) and is 0 for
  "round" (sign(0)).
* **x·K beyond float resolution** (|x| ≥ 2**(nmant+1)/K, see
  :func:`gaaf.activations.reference.float_resolution_limit`: ≈ 1.68e3 in float32 and 9.0e11 in
  float64 at K = 1e4): every representable x·K is already an integer, so floor(y) = y and
  g ≡ −0.5/K exactly; the forward is φ(x) − 0.5·s(x)/K and the sawtooth no longer moves the
  value (its derivative g' still does, which is the point of GAAF). The overflow rule above
  simply continues this.
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
and the result is cast back to the input's dtype.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Union

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from .spec import GAAFSpec

Tensor = torch.Tensor
Num = Union[Tensor, float]  # a tensor, or a Python number standing for a constant tensor

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_LEAKY_SLOPE = 0.01  # F.leaky_relu's default negative_slope
_SOFTPLUS_THRESHOLD = 20.0  # F.softplus's default threshold (beta 1)
_GELU_SATURATION = 40.0  # |x| beyond which gelu(x) is x (x > 0) or rounds to −0 (x < 0), any dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the math runs in: float32 for half types, otherwise the dtype itself."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


# --------------------------------------------------------------------------- base activations φ
def base_value(x: Tensor, base: str) -> Tensor:
    """φ(x) with PyTorch's default parameters (the same functions as reference.BASES; gelu in the
    overflow-safe form of the module docstring)."""
    if base == "relu":
        return torch.relu(x)
    if base == "tanh":
        return torch.tanh(x)
    if base == "sigmoid":
        return torch.sigmoid(x)
    if base == "leaky_relu":
        return F.leaky_relu(x, _LEAKY_SLOPE)
    if base == "elu":
        return F.elu(x)
    if base == "gelu":
        c = torch.clamp(x, -_GELU_SATURATION, _GELU_SATURATION)
        return torch.where(x > _GELU_SATURATION, x, c * _normal_cdf(c))
    if base == "silu":
        return F.silu(x)
    if base == "softplus":
        return F.softplus(x)
    raise ValueError(f"unknown base activation {base!r}")


def base_slope_plus(x: Tensor, base: str, rest: Tensor) -> Tensor:
    r"""φ'(x) + rest, with φ' exactly as PyTorch's backward kernels define it.

    Adding ``rest`` inside lets the piecewise bases pick between two sums with one ``where``
    (no constant tensors needed, so the dtype is always x's).

    relu: 1 if x > 0 else 0 · leaky_relu: 1 if x > 0 else 0.01 · elu: 1 if x > 0 else eˣ ·
    tanh: 1 − tanh² · sigmoid: σ(1 − σ) · gelu: Φ(c) + c·e^{−c²/2}/√(2π), c = clamp(x, ±40) ·
    silu: σ(1 + x(1 − σ)) · softplus: 1 if x > 20 else σ(x).
    """
    pos = x > 0
    if base == "relu":
        return rest + pos  # bool → 1.0 / 0.0 in rest's dtype
    if base == "leaky_relu":
        return torch.where(pos, rest + 1.0, rest + _LEAKY_SLOPE)
    if base == "elu":
        # exp(x) of a large positive x is inf but only in the branch that `where` drops
        return torch.where(pos, rest + 1.0, rest + torch.exp(x))
    if base == "tanh":
        t = torch.tanh(x)
        return rest + (1.0 - t * t)
    if base == "sigmoid":
        sg = torch.sigmoid(x)
        return rest + sg * (1.0 - sg)
    if base == "gelu":
        # Φ(c) + c·pdf(c) is exactly 1 at c = 40 and 0 at c = −40: no select needed for |x| > 40
        c = torch.clamp(x, -_GELU_SATURATION, _GELU_SATURATION)
        pdf = torch.exp(-0.5 * (c * c)) * _INV_SQRT_2PI
        return rest + (_normal_cdf(c) + c * pdf)
    if base == "silu":
        sg = torch.sigmoid(x)
        return rest + sg * (1.0 + x * (1.0 - sg))
    if base == "softplus":
        return torch.where(x > _SOFTPLUS_THRESHOLD, rest + 1.0, rest + torch.sigmoid(x))
    raise ValueError(f"unknown base activation {base!r}")


def _normal_cdf(c: Tensor) -> Tensor:
    """Φ(c) = ½·erfc(−c/√2), for |c| ≤ 40 (see the module docstring)."""
    return torch.erfc(c * -_SQRT1_2) * 0.5


# --------------------------------------------------------------------------- sawtooth g
def sawtooth_and_slope(x: Tensor, frequency: float, variant: str) -> "tuple[Tensor, Num]":
    """(g(x), g'(x)), overflow-safe: where x·K is ±inf the fractional part counts as 0.

    There ``y - floor(y)`` is ``inf - inf = NaN`` (a finite y never gives NaN), so NaN → 0 is the
    guard, written ``where(v == v, v, 0)``: two eager ops, and a vectorized compare when compiled
    (inductor's CPU isnan/isinf run one element at a time). A NaN input still gives a NaN output,
    through φ(NaN) and s(NaN). g = c·(1/K) with c from :func:`centered_sawtooth_and_slope`: a
    multiply by the rounded 1/K rather than a division (relative error ~1e-16, and |g| ≤ 0.5/K).
    """
    c, dg = centered_sawtooth_and_slope(x, frequency, variant)
    return c * (1.0 / frequency), dg


def centered_sawtooth_and_slope(x: Tensor, frequency: float, variant: str) -> "tuple[Tensor, Num]":
    """(c, g'(x)) with c = K·g(x) ∈ [−0.5, 0.5): the sawtooth before the 1/K scale, so callers
    can fold 1/K into another constant (one multiply fewer per element)."""
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
def named_shape_and_slope(
    x: Tensor, shape: str, params: "dict[str, float]", with_slope: bool = True
) -> "tuple[Num, Num]":
    """(s(x), s'(x)) for the named shapes; Python numbers stand for constants. s' is skipped
    (returned as 0.0) when not `with_slope`: the forward needs s only.

    sigmoid: s = σ(a(x + b)), s' = a·s(1 − s) · gaussian: s = exp(−(x − c)²/w),
    s' = s·(−2(x − c)/w), 0 where s = 0 · none: s = 1, s' = 0.
    """
    if shape == "sigmoid":
        slope, shift = params["slope"], params["shift"]
        if slope == 0.0:  # 0·(x + b) is NaN where x + b overflows; s is the constant 1/2
            return 0.5, 0.0
        z = x + shift if shift != 0.0 else x  # skipping exact no-ops saves eager kernels
        s = torch.sigmoid(slope * z if slope != 1.0 else z)
        if not with_slope:
            return s, 0.0
        ds = s * (1.0 - s)
        return s, (slope * ds if slope != 1.0 else ds)
    if shape == "gaussian":
        center, width = params["center"], params["width"]
        d = x - center if center != 0.0 else x
        s = torch.exp((d * d) * (-1.0 / width))  # a multiply by the rounded −1/w, not a division
        if not with_slope:
            return s, 0.0
        ds = torch.where(s > 0, s * (d * (-2.0 / width)), 0.0)  # d = ±inf: 0·inf would be NaN
        return s, ds
    if shape == "none":
        return 1.0, 0.0
    raise ValueError(f"unknown shape {shape!r}")


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
    """φ(x) + g(x)·s(x), in float32 for half inputs, returned in x's dtype."""
    xc = _upcast(x)
    if callable(spec.shape):
        g, _ = sawtooth_and_slope(xc, spec.frequency, spec.variant)
        gs: Tensor = g * callable_shape_value(xc, spec.shape)
    else:
        gs = _g_times_s(xc, spec)
    return (base_value(xc, spec.base) + gs).to(x.dtype)


def _g_times_s(x: Tensor, spec: "GAAFSpec") -> Tensor:
    """g(x)·s(x) for a named shape.

    Compiled, the sigmoid shape is written g / (1 + e^{−a(x + b)}): the sigmoid's own division
    makes the product (one division and one multiply fewer per element than g·σ). Eager keeps
    g·σ(a(x + b)): fewer kernels there.
    """
    params = spec.shape_params
    if spec.shape == "sigmoid" and params["slope"] != 0.0 and torch.compiler.is_compiling():
        g, _ = sawtooth_and_slope(x, spec.frequency, spec.variant)
        return g / (1.0 + torch.exp(_neg_affine(x, params["slope"], params["shift"])))
    g, _ = sawtooth_and_slope(x, spec.frequency, spec.variant)
    s, _ = named_shape_and_slope(x, spec.shape, dict(params), with_slope=False)
    return g if isinstance(s, float) and s == 1.0 else g * s


def _neg_affine(x: Tensor, slope: float, shift: float) -> Tensor:
    """−slope·(x + shift), one op where slope is 1."""
    if slope == 1.0:
        return (-shift) - x
    return (x + shift if shift != 0.0 else x) * (-slope)


def _sigmoid_shape(x: Tensor, slope: float, shift: float) -> Tensor:
    """σ(slope·(x + shift)) for slope ≠ 0; compiled as 1/(1 + e^{−z}) with −z formed directly."""
    if torch.compiler.is_compiling():
        return torch.reciprocal(1.0 + torch.exp(_neg_affine(x, slope, shift)))
    z = x + shift if shift != 0.0 else x
    return torch.sigmoid(slope * z if slope != 1.0 else z)


def _shape_terms(x: Tensor, spec: "GAAFSpec") -> Num:
    r"""g'(x)·s(x) + g(x)·s'(x) for a named shape, factored to save multiplies:

    sigmoid: s·(g' + a·g·(1 − s)) · gaussian: s·(g' − 2g·(x − c)/w), 0 where s = 0 (there
    x − c may be ±inf) · none: g'. The 1/K of g is folded into the constant multiplying it.
    """
    frequency, params = spec.frequency, spec.shape_params
    c, dg = centered_sawtooth_and_slope(x, frequency, spec.variant)  # g = c/K
    if spec.shape == "sigmoid":
        slope, shift = params["slope"], params["shift"]
        if slope == 0.0:  # s ≡ 1/2, s' = 0
            return 0.5 * dg
        s = _sigmoid_shape(x, slope, shift)
        return s * (dg + (c * (slope / frequency)) * (1.0 - s))
    if spec.shape == "gaussian":
        center, width = params["center"], params["width"]
        d = x - center if center != 0.0 else x
        s = torch.exp((d * d) * (-1.0 / width))
        # where s = 0 the product would be 0·inf = NaN for d = ±inf; s (0, or NaN for a NaN x) is kept
        return torch.where(s > 0, s * (dg + (c * (-2.0 / (width * frequency))) * d), s)
    if spec.shape == "none":
        return dg
    raise ValueError(f"unknown shape {spec.shape!r}")


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
        if s_t.requires_grad:
            (vjp,) = torch.autograd.grad(s_t, xd, gc * g, allow_unused=True)
            if vjp is not None:
                out = out + vjp
        return out.to(x.dtype)
    return (gc * base_slope_plus(xc, spec.base, _as_tensor(_shape_terms(xc, spec), xc))).to(x.dtype)


def _as_tensor(v: Num, like: Tensor) -> Tensor:
    """A Python number as a constant tensor shaped like `like` (shape "none" + variant "floor")."""
    return v if isinstance(v, Tensor) else torch.full_like(like, v)


__all__ = [
    "compute_dtype", "base_value", "base_slope_plus", "sawtooth_and_slope", "centered_sawtooth_and_slope",
    "named_shape_and_slope", "callable_shape_value", "_fwd", "_bwd",
]
