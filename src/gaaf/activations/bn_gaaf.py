r"""Batch norm (training) [+ residual] → GAAF as one autograd Function that saves no activation output.

Where a GAAF site follows a training-mode BatchNorm (every site of the CIFAR ResNets), the plain
composition keeps one activation-sized tensor more than relu does: BatchNorm saves its input z,
:class:`~.fused.GAAFFn` saves its input x = BN(z) (+ r), and the next layer saves the output y,
where relu's backward needs only y. :class:`BNGAAFFn` computes, per channel c of z (N, C, ...),

.. math::

    \mu_c = \operatorname{mean}(z_{\cdot c}),\quad
    \sigma^2_c = \operatorname{mean}((z_{\cdot c} - \mu_c)^2)\ \text{(biased)},\quad
    \mathrm{invstd}_c = 1/\sqrt{\sigma^2_c + \varepsilon}

    \alpha_c = \mathrm{invstd}_c\, w_c,\quad \beta_c = b_c - \mu_c\,\alpha_c,\qquad
    x = z\,\alpha + \beta\ (+\, r),\qquad y = \phi(x) + g(x)\,s(x)

and saves only z, r (if given), w, b, μ and invstd: not x. The backward recomputes x with the
same ops in the same order (on the same machine and settings the same bits, so the gradient is the
exact derivative of the function the forward computed), then

.. math::

    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,\phi_{new}'(x),\qquad
    \frac{\partial L}{\partial r} = \frac{\partial L}{\partial x}

and ∂L/∂z, ∂L/∂w, ∂L/∂b from ATen's own training-mode batch-norm backward given ∂L/∂x
(``native_batch_norm_backward``: the batch statistics' dependence on z included). The statistics:
where the compiled kernels apply (below), one compiled pass over z (Welford, :mod:`.bn_kernels`),
the running statistics then updated with BatchNorm's formula (``running ← (1 − m)·running + m·batch``,
the variance unbiased, n/(n − 1)), equal to BatchNorm's to rounding; elsewhere
``torch.batch_norm_update_stats``, the routine behind ``nn.BatchNorm2d``'s CPU training forward, which
updates the running statistics itself (μ and the running statistics bitwise BatchNorm's where checked:
float32 and float64, contiguous, this project's 2-core Xeon). invstd is computed in float64 and
rounded once (what ATen does for float32).

The pointwise part, two ways (chosen in the forward; the backward recomputes x the same way):

* **compiled** (:mod:`.bn_kernels`, where eager compiling is on and z is a contiguous or
  channels_last CPU tensor of ≥ 32,768 elements, every size ≥ 2): one kernel computes y from z, α, β (and r), x
  never reaching memory, and one computes ∂L/∂x from z, α, β (r) and ∂L/∂y, recomputing x inside
  the derivative's own pass: no pass more than the unfused op's, one less in the forward.
* **plain**: x by ``torch.addcmul`` (+ r), then :class:`~.fused.GAAFFn`'s own forward/backward on it
  (flat compiled kernels or plain math, :mod:`.kernels`): one elementwise pass more in the backward
  (recomputing x) than the unfused op.

x is not computed by BatchNorm's kernel, so the output may differ from ``gaaf(batch_norm(z) + r)``
by floating-point rounding (x by an ulp or so, and the sawtooth by one step where x·K lands within
rounding of an integer); the compiled and the plain path may differ from each other the same way.
Not double-differentiable (``once_differentiable``).

:class:`BNShortcutGAAFFn` takes the residual as ``shortcut(x)`` (a module and its input, e.g. a residual
block's 1×1 projection of the block input) and saves x instead of r: the backward runs the shortcut
again under autograd and takes ∂L/∂x and the shortcut's parameter gradients from it, so r costs no
memory where x is kept anyway.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch.autograd.function import once_differentiable

from . import bn_kernels
from .fused import _backward, _forward, _is_dense, _is_wrapped, _plain_only
from .spec import GAAFSpec

Tensor = torch.Tensor


def _channel_shape(z: Tensor) -> "tuple[int, ...]":
    return (z.shape[1],) + (1,) * (z.dim() - 2)


def accepts(z: object) -> bool:
    """Whether z suits the op's flat kernels: a non-empty, dense, strided float32/float64 tensor of
    at least two dimensions, not a torch.func wrapper."""
    return (isinstance(z, Tensor) and z.layout == torch.strided and z.dtype in (torch.float32, torch.float64)
            and z.dim() >= 2 and z.numel() > 0 and not _is_wrapped(z) and _is_dense(z))


def batch_stats(z: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor], momentum: float,
                eps: float) -> "tuple[Tensor, Tensor]":
    """(μ, invstd) of z over every dimension but 1; running statistics given are updated in place
    as ``nn.BatchNorm2d`` does in training (weight `momentum` on the batch, unbiased variance).

    Where the compiled kernels apply, μ and σ² come from one compiled pass (:func:`.bn_kernels.batch_stats`,
    Welford) and the running statistics are updated here with BatchNorm's formula; elsewhere from
    ``torch.batch_norm_update_stats`` (two passes; BatchNorm's own routine, running statistics included).
    """
    stats = bn_kernels.batch_stats(z) if not _plain_only(z) and bn_kernels.usable(z) else None
    if stats is None:
        mean, var = torch.batch_norm_update_stats(z, running_mean, running_var, momentum)
    else:
        mean, var = stats
        n = z.numel() // z.shape[1]
        for running, batch in ((running_mean, mean), (running_var, var * (n / (n - 1)))):
            if running is not None:  # running ← m·batch + (1 − m)·running
                running.copy_(batch * momentum + running * (1.0 - momentum))
    invstd = torch.rsqrt(var.to(torch.float64) + eps).to(var.dtype)
    return mean, invstd


def affine(weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor) -> "tuple[Tensor, Tensor]":
    """(α, β) per channel: α = invstd·w, β = b − μ·α."""
    alpha = invstd * weight
    return alpha, bias - mean * alpha


def normalized(z: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor,
               residual: Optional[Tensor]) -> Tensor:
    """x = z·α + β (+ r) by plain ops: the forward's and the backward's one op sequence where the
    compiled kernels are not used (a fresh tensor, laid out like z)."""
    alpha, beta = affine(weight, bias, mean, invstd)
    shape = _channel_shape(z)
    x = torch.addcmul(beta.view(shape), z, alpha.view(shape))
    if residual is not None:
        x.add_(residual)
    return x


def _pointwise_forward(z: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor,
                       residual: Optional[Tensor], spec: GAAFSpec) -> "tuple[Tensor, bool]":
    """(y, whether the compiled kernel computed it)."""
    if not _plain_only(z) and bn_kernels.usable(z, residual, spec):
        y = bn_kernels.forward(z, *affine(weight, bias, mean, invstd), residual, spec)
        if y is not None:
            return y, True
    return _forward(normalized(z, weight, bias, mean, invstd, residual), spec), False


def _pointwise_backward(z: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor,
                        residual: Optional[Tensor], grad: Tensor, spec: GAAFSpec, compiled: bool) -> Tensor:
    """∂L/∂x, with x recomputed the way the forward computed it."""
    if compiled and not _plain_only(z, grad):
        dx = bn_kernels.backward(z, *affine(weight, bias, mean, invstd), residual, grad, spec)
        if dx is not None:
            return dx
    return _backward(normalized(z, weight, bias, mean, invstd, residual), grad, spec)


def _batch_norm_backward(dx: Tensor, z: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor, eps: float,
                         need_z: bool, need_w: bool, need_b: bool) -> "tuple[Optional[Tensor], ...]":
    """∂L/∂z, ∂L/∂w, ∂L/∂b of training-mode BatchNorm given ∂L/∂x (ATen's own backward; None where
    not needed)."""
    if not (need_z or need_w or need_b):
        return None, None, None
    return tuple(torch.ops.aten.native_batch_norm_backward(
        dx, z, weight, None, None, mean, invstd, True, eps, [need_z, need_w, need_b]))


def _stats_and_output(ctx: Any, z: Tensor, weight: Tensor, bias: Tensor, residual: Optional[Tensor],
                      running_mean: Optional[Tensor], running_var: Optional[Tensor], momentum: float, eps: float,
                      spec: GAAFSpec) -> "tuple[Tensor, Tensor, Tensor]":
    """Both Functions' forward: (y, μ, invstd), with ctx.compiled, ctx.spec and ctx.eps set."""
    mean, invstd = batch_stats(z, running_mean, running_var, momentum, eps)
    y, ctx.compiled = _pointwise_forward(z, weight, bias, mean, invstd, residual, spec)
    ctx.spec, ctx.eps = spec, eps
    return y, mean, invstd


def _backward_through(ctx: Any, z: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor,
                      residual: Optional[Tensor], grad: Tensor) -> "tuple[Optional[Tensor], ...]":
    """Both Functions' backward through GAAF and BatchNorm: (∂L/∂x, ∂L/∂z, ∂L/∂w, ∂L/∂b), the last three
    None where not needed (``ctx.needs_input_grad[:3]``)."""
    need_z, need_w, need_b = ctx.needs_input_grad[:3]
    dx = _pointwise_backward(z, weight, bias, mean, invstd, residual, grad, ctx.spec, ctx.compiled)
    return (dx, *_batch_norm_backward(dx, z, weight, mean, invstd, ctx.eps, need_z, need_w, need_b))


class BNGAAFFn(torch.autograd.Function):
    """``BNGAAFFn.apply(z, weight, bias, residual, running_mean, running_var, momentum, eps, spec)``:
    GAAF(BatchNorm_train(z) + residual) saving z, residual, weight, bias, μ, invstd (module doc).

    `residual` and the running statistics may be None; the running statistics are updated in place.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, weight: Tensor, bias: Tensor, residual: Optional[Tensor],  # type: ignore[override]
                running_mean: Optional[Tensor], running_var: Optional[Tensor], momentum: float, eps: float,
                spec: GAAFSpec) -> Tensor:
        y, mean, invstd = _stats_and_output(ctx, z, weight, bias, residual, running_mean, running_var, momentum,
                                            eps, spec)
        ctx.save_for_backward(z, weight, bias, residual, mean, invstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> "tuple[Optional[Tensor], ...]":  # type: ignore[override]
        z, weight, bias, residual, mean, invstd = ctx.saved_tensors
        need_z, need_w, need_b, need_r = ctx.needs_input_grad[:4]
        if not (need_z or need_w or need_b or need_r):
            return (None,) * 9
        dx, grad_z, grad_w, grad_b = _backward_through(ctx, z, weight, bias, mean, invstd, residual, grad)
        return grad_z, grad_w, grad_b, (dx if need_r else None), None, None, None, None, None


class BNShortcutGAAFFn(torch.autograd.Function):
    """``BNShortcutGAAFFn.apply(z, weight, bias, x, running_mean, running_var, momentum, eps, spec,
    shortcut, *shortcut_params)``: GAAF(BatchNorm_train(z) + shortcut(x)) saving z and x, not the
    residual r = shortcut(x).

    Where x is kept anyway (a residual block's input, which its first convolution saves), r costs no
    memory: the backward recomputes it with the same module, under autograd, and takes ∂L/∂x and the
    shortcut's parameter gradients from that recomputation (∂L/∂r = ∂L/∂x of the activation's input).
    `shortcut_params` are the shortcut's parameters (autograd's inputs for their gradients).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, weight: Tensor, bias: Tensor, x: Tensor,  # type: ignore[override]
                running_mean: Optional[Tensor], running_var: Optional[Tensor], momentum: float, eps: float,
                spec: GAAFSpec, shortcut: "torch.nn.Module", *shortcut_params: Tensor) -> Tensor:
        residual = shortcut(x)
        _check_residual(residual, z)
        y, mean, invstd = _stats_and_output(ctx, z, weight, bias, residual, running_mean, running_var, momentum,
                                            eps, spec)
        ctx.save_for_backward(z, weight, bias, x, mean, invstd)
        ctx.shortcut, ctx.params = shortcut, shortcut_params
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> "tuple[Optional[Tensor], ...]":  # type: ignore[override]
        z, weight, bias, x, mean, invstd = ctx.saved_tensors
        need_x = ctx.needs_input_grad[3]
        need_params = ctx.needs_input_grad[10:]
        with torch.enable_grad():  # the shortcut again, as the forward ran it, with a graph to differentiate
            xr = x.detach().requires_grad_(need_x)
            residual = ctx.shortcut(xr)
        dx, grad_z, grad_w, grad_b = _backward_through(ctx, z, weight, bias, mean, invstd, residual.detach(), grad)
        targets = ([xr] if need_x else []) + [p for p, need in zip(ctx.params, need_params) if need]
        grads: "list[Optional[Tensor]]" = [None] * len(targets)
        if targets and residual.requires_grad:
            grads = list(torch.autograd.grad(residual, targets, dx, allow_unused=True))
        grad_x = grads.pop(0) if need_x else None
        grad_params = [grads.pop(0) if need else None for need in need_params]
        return (grad_z, grad_w, grad_b, grad_x, None, None, None, None, None, None, *grad_params)


def _check_residual(residual: Tensor, z: Tensor) -> None:
    if residual.shape != z.shape or residual.dtype != z.dtype:
        raise ValueError(f"bn_gaaf: residual must have z's shape {tuple(z.shape)} and dtype {z.dtype}, "
                         f"got {tuple(residual.shape)} {residual.dtype}")


def bn_gaaf(z: Tensor, weight: Tensor, bias: Tensor, spec: GAAFSpec, *, residual: Optional[Tensor] = None,
            running_mean: Optional[Tensor] = None, running_var: Optional[Tensor] = None,
            momentum: float = 0.1, eps: float = 1e-5, shortcut: "Optional[torch.nn.Module]" = None,
            shortcut_input: Optional[Tensor] = None) -> Tensor:
    """GAAF(BatchNorm_train(z)·w + b (+ residual)) through :class:`BNGAAFFn`.

    z: (N, C, ...) float32/float64, dense; weight, bias: (C,) of z's dtype; residual: z's shape and
    dtype; spec: a validated :class:`GAAFSpec` with a named (not callable) shape. Running statistics,
    where given, are updated in place like ``nn.BatchNorm2d`` in training with this momentum.
    With `shortcut` (a module) and `shortcut_input` x instead of `residual`, the residual is
    ``shortcut(x)``, recomputed in the backward rather than kept (:class:`BNShortcutGAAFFn`).
    """
    if z.dim() < 2 or z.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"bn_gaaf needs a float32/float64 (N, C, ...) tensor, got {z.dtype} of shape {tuple(z.shape)}")
    if callable(spec.shape):
        raise ValueError("bn_gaaf needs a named shape (sigmoid, gaussian, none), not a callable")
    for name, t in (("weight", weight), ("bias", bias)):
        if t.shape != (z.shape[1],) or t.dtype != z.dtype:
            raise ValueError(f"bn_gaaf: {name} must be ({z.shape[1]},) {z.dtype}, got {tuple(t.shape)} {t.dtype}")
    if residual is not None:
        _check_residual(residual, z)
    if (shortcut is None) != (shortcut_input is None) or (shortcut is not None and residual is not None):
        raise ValueError("bn_gaaf takes a residual, or a shortcut module with its shortcut_input, or neither")
    if shortcut is not None:
        return BNShortcutGAAFFn.apply(z, weight, bias, shortcut_input, running_mean, running_var, float(momentum),
                                      float(eps), spec, shortcut, *shortcut.parameters())
    return BNGAAFFn.apply(z, weight, bias, residual, running_mean, running_var, float(momentum), float(eps), spec)


__all__ = ["BNGAAFFn", "BNShortcutGAAFFn", "bn_gaaf", "accepts", "affine", "batch_stats", "normalized"]
