r"""The fused, exact GAAF op: an autograd Function that saves only its input.

Autograd on the reference composition φ(x) + g(x)·s(x) keeps several input-sized intermediates
alive for backward (x·K, the sigmoid, the product terms, ...). :class:`GAAFFn` saves x alone and
recomputes the derivative in closed form (:mod:`.pointwise`):

.. math::  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,
           \bigl(\phi'(x) + g'(x)\,s(x) + g(x)\,s'(x)\bigr)

with g' = 1 ("floor") or sign(xK − round(xK)) ("round"); "surrogate" (K → ∞) has g ≡ 0 and
g' = 1: the forward is PyTorch's own φ(x), bitwise, and the backward φ'(x) + s(x). It matches autograd of
:func:`gaaf.activations.reference.gaaf_reference` to float64 rounding (tested to 1e-12), and,
unlike the reference, stays finite for every finite input: where x·K overflows the sawtooth's
fractional part is 0 (g = −0.5/K), and beyond float resolution (|x·K| ≥ 2**23, i.e.
|x| ≥ 838.8608 in float32 at K = 1e4) every float32 x·K is an integer anyway, so g ≡ −0.5/K, the
forward is φ(x) − 0.5·s(x)/K and "round"'s g' is 0 (see :mod:`.pointwise`).

Execution paths (all give the same numbers up to rounding):

* **eager**: the math runs on a flat 1-D view of the input's storage through kernels compiled
  once per (spec, dtype, device) (:mod:`.kernels`), or as plain ops where compiling is off,
  failed, or not worthwhile. The output has ``torch.empty_like(x)``'s layout: a dense input's
  exact strides (contiguous, channels_last, permuted), a contiguous/channels_last one otherwise.
  The surrogate's forward is the base's own op on x itself (its output layout is that op's).
* **inside torch.compile / export / jit tracing**: the plain math, so the outer compiler traces
  forward and backward with no graph break (``fullgraph=True`` works) and fuses them itself;
  when training under torch.compile the op sits in an activation checkpoint so that its
  derivative is recomputed in the backward, not precomputed and stored by the forward
  (:func:`_recompute_in_backward`).

float16/bfloat16 inputs (e.g. under autocast) are computed in float32 and returned in their
own dtype; the Function sees no autocast (activations are not on autocast's cast lists). A bf16
input keeps little of the sawtooth (x·K is an integer for every |x| ≥ 8 at K = 1e4, and the
forward's ±0.5/K rounds away): :mod:`.precision` says exactly what is left, and
:func:`gaaf_fused` warns once per process (:class:`~.precision.GAAFPrecisionWarning`).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.utils.checkpoint

from . import kernels, precision
from .kernels import eager_compile_enabled, set_eager_compile
from .pointwise import _as_tensor, _bwd, _fwd, _nan_to_zero, _shape, _upcast, callable_shape_value, plain_base_value
from .spec import GAAFSpec

Tensor = torch.Tensor


# --------------------------------------------------------------------------- layout helpers
def _is_dense(t: Tensor) -> bool:
    """Non-overlapping and dense: the elements fill storage[offset : offset + numel] exactly once."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _dense(x: Tensor) -> Tensor:
    """x itself if dense, else a dense copy with ``torch.empty_like(x)``'s layout."""
    if x.is_contiguous() or _is_dense(x):
        return x
    out = torch.empty_like(x)
    out.copy_(x)
    return out


def _alias(t: Tensor, shape: "Sequence[int]", stride: "Sequence[int]") -> Tensor:
    """A fresh tensor (not a view, not requiring grad) over a dense t's storage from t's offset.

    ``set_`` with t itself as the source: going through ``t.untyped_storage()`` would create a
    Python storage object that outlives the call and keeps the storage's use count above one,
    which stops autograd from accumulating a gradient into it in place (an extra full-size add
    wherever two gradients meet, e.g. at every residual connection).
    """
    if not t.is_contiguous():  # set_ takes a contiguous source: a transient 1-D view of the span
        t = t.as_strided((t.numel(),), (1,))
    out = t.new_empty((0,))
    out.set_(t, 0, shape, stride)  # the offset counts from t's own
    return out


def _flat(t: Tensor) -> Tensor:
    """(numel,) alias of a dense tensor's storage span, in memory order.

    Built with ``set_`` so it is neither a view nor requires grad: the compiled kernels then see
    the same kind of input every call (Dynamo guards on a view's base and on requires_grad).
    """
    return _alias(t, (t.numel(),), (1,))


def _same_layout(t: Tensor, like: Tensor) -> bool:
    if like.is_contiguous():
        return t.is_contiguous()
    return _is_dense(t) and all(a == b for a, b, n in zip(t.stride(), like.stride(), t.shape) if n != 1)


def _unflat(flat: Tensor, like: Tensor) -> Tensor:
    """A fresh (non-view) tensor with `like`'s shape and strides over the memory-ordered `flat`:
    `flat` itself where `like` is 1-D contiguous, else an alias of its storage.

    ``set_`` rather than ``as_strided``/``view`` so that the output of the autograd Function is
    not a view (in-place ops on it, e.g. a following ``nn.ReLU(inplace=True)``, stay legal) and
    a gradient returned from backward is the only owner of its storage (accumulated in place).
    """
    flat = flat.contiguous()
    if like.dim() == 1 and like.is_contiguous():
        return flat
    return _alias(flat, like.shape, like.stride())


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


_is_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", lambda t: False)


def _plain_only(*tensors: Tensor) -> bool:
    """Tracing, or torch.func transforms (vmap/grad wrappers cannot be aliased with ``set_``)."""
    return _tracing() or any(t.numel() == 0 or _is_wrapped(t) for t in tensors)


def _check_input(x: Any) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"GAAF expects a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"GAAF needs a floating-point tensor (float16, bfloat16, float32, float64), got {x.dtype}")


# --------------------------------------------------------------------------- the autograd Function
def _forward(x: Tensor, spec: GAAFSpec) -> Tensor:
    if _plain_only(x) or spec.variant == "surrogate":  # the surrogate: φ's own op on x, bitwise
        return _fwd(x, spec)
    xd = _dense(x)
    return _unflat(kernels.forward_flat(_flat(xd), spec), xd)


def _backward(x: Tensor, grad: Tensor, spec: GAAFSpec) -> Tensor:
    if _plain_only(x, grad) or torch.is_grad_enabled():
        # grad mode is on under create_graph=True: the plain ops keep the autograd graph
        # (double backward); the storage aliasing below would cut it
        return _bwd(x, grad, spec)
    xd = _dense(x)
    if not _same_layout(grad, xd):  # e.g. an expanded (stride 0) grad from .sum()
        g2 = torch.empty_strided(xd.shape, xd.stride(), dtype=grad.dtype, device=grad.device)
        g2.copy_(grad)
        grad = g2
    return _unflat(kernels.backward_flat(_flat(xd), _flat(grad), spec), xd)


class GAAFFn(torch.autograd.Function):
    """``GAAFFn.apply(x, spec)``: φ(x) + g(x)·s(x) saving only x; backward in closed form."""

    @staticmethod
    def forward(x: Tensor, spec: GAAFSpec) -> Tensor:  # type: ignore[override]
        return _forward(x, spec)

    @staticmethod
    def setup_context(ctx: Any, inputs: Sequence[Any], output: Tensor) -> None:
        x, spec = inputs
        ctx.save_for_backward(x)  # the only tensor kept for backward
        ctx.spec = spec

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> "tuple[Tensor | None, None]":  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None
        (x,) = ctx.saved_tensors
        return _backward(x, grad, ctx.spec), None

    @staticmethod
    def vmap(info: Any, in_dims: "tuple[int | None, None]", x: Tensor, spec: GAAFSpec) -> "tuple[Tensor, int | None]":
        # pointwise: the batched tensor goes through as one bigger tensor, batch dim unchanged
        return GAAFFn.apply(x, spec), in_dims[0]


# Function.apply binds (x, spec) against forward's signature with inspect on every call before
# handing over to the C++ apply; with no torch.func transform active and outside any tracer that
# binding changes nothing, so the C++ apply is called directly.
_c_apply = getattr(super(torch.autograd.Function, GAAFFn), "apply", None)
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)
# autocast on for any device (one C call); where missing, precision.check_input asks per device
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def _recompute_in_backward(x: Tensor) -> bool:
    """Inside torch.compile (Dynamo), training: wrap the op in an activation checkpoint.

    Left alone, AOTAutograd's min-cut partitioner evaluates the closed-form derivative already in
    the forward graph (it depends on x only) and saves it, in the tangent's layout: each GAAF
    site then writes four input-sized tensors (x, 1 + e^{−z}, the output and a transposed copy
    of φ_new'(x)) where relu writes one. Inside a non-reentrant checkpoint the region is
    recomputed in the backward instead, fused into the batch-norm backward kernel: one
    exponential per element in each pass, as the eager op does. Values and gradients are
    unchanged.
    """
    return torch.compiler.is_dynamo_compiling() and torch.is_grad_enabled() and x.requires_grad


def _fwd_autograd(x: Tensor, spec: GAAFSpec) -> Tensor:
    """The plain forward in a form autograd differentiates exactly: :func:`_fwd` itself, but for the
    surrogate φ(x) + z·s(x) with s detached and z = x − x.detach() (0 in value, NaN → 0 where x is
    ±inf; derivative 1): derivative φ' + s."""
    if spec.variant != "surrogate":
        return _fwd(x, spec)
    xc = _upcast(x)
    if callable(spec.shape):
        s = callable_shape_value(xc, spec.shape)
    else:
        s = _as_tensor(_shape(spec.shape).value(xc, spec.shape_params), xc)
    return (plain_base_value(xc, spec.base) + _nan_to_zero(xc - xc.detach()) * s.detach()).to(x.dtype)


def gaaf_fused(x: Tensor, spec: GAAFSpec) -> Tensor:
    """φ(x) + g(x)·s(x) for a validated spec, through :class:`GAAFFn` (output dtype = x's dtype)."""
    _check_input(x)
    if _tracing():
        if callable(spec.shape):
            # the Function's backward would call torch.autograd.grad on the callable, which the
            # compiler cannot trace: the plain forward, differentiated by autograd, instead
            return _fwd_autograd(x, spec)
        if _recompute_in_backward(x):
            return torch.utils.checkpoint.checkpoint(GAAFFn.apply, x, spec, use_reentrant=False)
        return GAAFFn.apply(x, spec)
    if not precision._warned and (x.dtype == torch.bfloat16 or _any_autocast()):
        precision.check_input(x, spec)  # bf16 cannot resolve the sawtooth: warn once per process
    if _c_apply is not None and _transforms_active is not None and not _transforms_active() and not _is_wrapped(x):
        return _c_apply(x, spec)
    return GAAFFn.apply(x, spec)


__all__ = ["GAAFFn", "gaaf_fused", "set_eager_compile", "eager_compile_enabled", "_fwd", "_bwd"]
