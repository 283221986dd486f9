"""BatchNorm [+ residual] → activation, fused into one op where that is safe (eager GAAF training).

``bn_act(bn, act, z, residual)`` returns ``act(residual + bn(z))`` (``act(bn(z))`` without a
residual). Where every condition below holds it computes that through
:func:`gaaf.activations.bn_gaaf.bn_gaaf` instead, which keeps no BN output for the backward:
an eager ResNet's GAAF site then holds what relu's holds (BatchNorm's input; the output is the next
layer's saved input). At a v1 block's last site the shortcut runs inside the op
(:func:`fused_bn_shortcut_act`) and again in its backward, so its output (the projection's, or the
zero-padded input) is not kept either. Values may differ from the unfused path by floating-point
rounding (the activation's input is computed by other ops than BatchNorm's kernel; see that module),
gradients likewise.

Fused only when all of these hold, else the modules are called as usual:

* fusion is on: not disabled by ``GAAF_NO_BN_FUSION=1`` or :func:`set_bn_fusion(False) <set_bn_fusion>`;
* training with grad enabled, no autocast, no torch.func transform, not inside torch.compile /
  torch.export / ``torch.jit`` tracing (compiled training keeps the module path: Inductor already fuses
  and recomputes there), and `z` a real tensor (not a torch.fx proxy);
* `bn` is exactly ``nn.BatchNorm2d`` (affine, tracking running statistics; momentum None is the
  cumulative average, as BatchNorm does) or exactly :class:`~.keras_bn.KerasBatchNorm2d` (batch
  statistics, then its own zero-debiased update), in training mode;
* `act` is exactly :class:`gaaf.GAAF` with a named (not callable) shape;
* neither module has hooks (forward, pre-forward or backward) and no global module hooks are
  registered: probes hook the sites, and precise-BN the BatchNorms, in the steps they sample, and
  those steps see the modules exactly as without fusion; neither module's ``forward`` is replaced
  on the instance;
* `z` is a dense 4-D float32/float64 tensor on the CPU, parameters and residual of its dtype and
  shape. (The op itself is device-agnostic, but it has been measured and tested on the CPU only: CUDA
  keeps cuDNN's batch norm until a GPU run shows the fused path is correct and no slower there.)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.modules import module as _module

from ..activations import GAAF
from ..activations.bn_gaaf import accepts, bn_gaaf
from ..activations.kernels import env_flag
from .keras_bn import KerasBatchNorm2d
from .layers import ZeroPadShortcut

Tensor = torch.Tensor

_enabled: Optional[bool] = None  # None: follow GAAF_NO_BN_FUSION
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None)


def set_bn_fusion(enabled: Optional[bool]) -> None:
    """Fuse BatchNorm → GAAF where safe (True), never (False), or follow the environment (None, the
    default: off where ``GAAF_NO_BN_FUSION`` is 1/true/yes/on). Either way the results agree to rounding."""
    global _enabled
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"set_bn_fusion takes True, False or None, got {enabled!r}")
    _enabled = enabled


def bn_fusion_enabled() -> bool:
    """Whether :func:`bn_act` may fuse (the switch above; the per-call conditions come on top)."""
    if _enabled is not None:
        return _enabled
    return not env_flag("GAAF_NO_BN_FUSION")


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                or "forward" in m.__dict__)


def _global_hooks() -> bool:
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


def _exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting()) if is_exporting is not None else False


def _autocast() -> bool:
    if _any_autocast is not None:
        return bool(_any_autocast())
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def fusable(bn: nn.Module, act: nn.Module, z: object) -> bool:
    """Whether :func:`bn_act` fuses ``act(bn(z) [+ residual])`` (every condition of the module doc
    but the residual's shape and dtype)."""
    if not isinstance(z, Tensor) or not bn.training or not torch.is_grad_enabled():
        return False
    if type(act) is not GAAF or callable(act.spec.shape) or not bn_fusion_enabled():
        return False
    kind = type(bn)
    if kind is nn.BatchNorm2d:
        if not (bn.affine and bn.track_running_stats and bn.running_mean is not None):
            return False
    elif kind is not KerasBatchNorm2d:
        return False
    if _hooked(bn) or _hooked(act) or _global_hooks():
        return False
    if torch.compiler.is_compiling() or _exporting() or torch.jit.is_tracing() or _transforms_active() or _autocast():
        return False
    if z.dim() != 4 or z.device.type != "cpu" or not accepts(z):
        return False
    if z.numel() < 2 * z.shape[1]:  # one value per channel: BatchNorm's own error, from the module path
        return False
    return bn.weight.dtype == z.dtype and bn.bias.dtype == z.dtype


def _fused(bn: nn.BatchNorm2d, act: GAAF, z: Tensor, residual: Optional[Tensor],
           shortcut: Optional[nn.Module] = None, x: Optional[Tensor] = None) -> Tensor:
    """The fused op: residual given, or shortcut(x) recomputed in its backward, or neither."""
    kw = {"residual": residual} if shortcut is None else {"shortcut": shortcut, "shortcut_input": x}
    if type(bn) is KerasBatchNorm2d:  # batch statistics in the op, then Keras 2's own moving update
        y = bn_gaaf(z, bn.weight, bn.bias, act.spec, eps=bn.eps, **kw)
        bn._update(z.detach())
        return y
    # nn.BatchNorm2d.forward's bookkeeping in training mode, then its update inside the op
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    return bn_gaaf(z, bn.weight, bn.bias, act.spec, running_mean=bn.running_mean, running_var=bn.running_var,
                   momentum=momentum, eps=bn.eps, **kw)


def bn_act(bn: nn.Module, act: nn.Module, z: Tensor, residual: Optional[Tensor] = None) -> Tensor:
    """``act(residual + bn(z))`` (``act(bn(z))`` without a residual), fused where the module doc says."""
    if fusable(bn, act, z):
        return fused_bn_act(bn, act, z, residual)
    y = bn(z)
    return act(y if residual is None else residual + y)


def fused_bn_act(bn: nn.Module, act: nn.Module, z: Tensor, residual: Optional[Tensor] = None) -> Tensor:
    """:func:`bn_act` for a caller that has checked :func:`fusable` itself (the fused op where the
    residual matches z's shape and dtype, the modules otherwise)."""
    if residual is None or (residual.shape == z.shape and residual.dtype == z.dtype):
        return _fused(bn, act, z, residual)  # type: ignore[arg-type]
    return act(residual + bn(z))


def fused_bn_shortcut_act(bn: nn.Module, act: nn.Module, z: Tensor, shortcut: nn.Module, x: Tensor) -> Tensor:
    """``act(bn(z) + shortcut(x))`` for a caller that has checked :func:`fusable` (a residual block's
    last site). An identity shortcut passes x as the residual; a recomputable one (below) is run inside
    the fused op and again in its backward, so its output r is not kept for the backward (x is: the
    block's first convolution keeps it anyway); any other shortcut's output is the residual.

    Recomputable: exactly ``nn.Conv2d`` (the 1×1 projection) or ``ZeroPadShortcut`` (option A), without
    hooks, its parameters of z's dtype, x a tensor of z's dtype."""
    if type(shortcut) is nn.Identity:
        return fused_bn_act(bn, act, z, x)
    if _recomputable(shortcut, x, z):
        return _fused(bn, act, z, None, shortcut, x)  # type: ignore[arg-type]
    return fused_bn_act(bn, act, z, shortcut(x))


def _recomputable(shortcut: nn.Module, x: Tensor, z: Tensor) -> bool:
    if type(shortcut) not in (nn.Conv2d, ZeroPadShortcut) or _hooked(shortcut):
        return False
    return isinstance(x, Tensor) and x.dtype == z.dtype and all(p.dtype == z.dtype for p in shortcut.parameters())


class BNAct(nn.Sequential):
    """``Sequential(bn=..., act=...)`` whose forward is :func:`bn_act`: the same children, names
    and state_dict keys as the plain Sequential (v2's head)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return bn_act(self.bn, self.act, x)


class ConvBNAct(nn.Sequential):
    """``Sequential(conv=..., bn=..., act=...)`` whose forward is conv then :func:`bn_act` (the stem)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return bn_act(self.bn, self.act, self.conv(x))


__all__ = ["bn_act", "fused_bn_act", "fused_bn_shortcut_act", "fusable", "set_bn_fusion", "bn_fusion_enabled", "BNAct", "ConvBNAct"]
