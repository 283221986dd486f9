r"""Compiled kernels of :mod:`.bn_gaaf`: the per-channel affine and GAAF in one pass each way.

A contiguous z (N, C, H, W) is seen as (N, C, L = H·W), with α (C, 1) and β (C, 1) broadcast over
N and L, a channels_last one as (M = N·H·W, C) with α (C,) and β (C,) (α_c = invstd_c·w_c,
β_c = b_c − μ_c·α_c):

.. math::

    \text{forward:}\quad y = \phi_{new}(z\alpha + \beta\ [+\ r])
    \qquad \text{backward:}\quad \partial L/\partial x = \partial L/\partial y\cdot\phi_{new}'(z\alpha + \beta\ [+\ r])

so the forward reads z (and r) and writes y, never x, and the backward recomputes x inside the
derivative's own pass. A third kernel, :func:`batch_stats`, gives the per-channel mean and biased
variance in one pass over z (``torch.var_mean``, which Inductor computes by Welford's update; ATen's
``batch_norm_update_stats`` reads z twice, and measured 4× slower at ResNet20's sites on 2 cores). Both kernels evaluate x with the same expression ``z * a + b (+ r)`` and
are built without floating-point contraction on CPU, so the backward differentiates the very x the
forward used. Kernels are compiled by ``torch.compile(dynamic=True, fullgraph=True)`` per
(spec, dtype, direction, residual or not, layout) on first use, ahead of time, and saved in gaaf's
kernel cache (:mod:`.compile_cache`) like :mod:`.kernels`' flat kernels, one set per torch thread
count in memory and on disk (Inductor's CPU code fixes its thread count when it is generated, and a
kernel's guards hold the global state it was compiled under, the thread count among it).
Sizes are symbolic and compiled without duck sizing (sizes that happen to be equal on the first
call are not tied together). Every call checks the kernel's guards (tens of microseconds, against
a kernel call of 0.3–3 ms at a ResNet's sites): the arguments here are contiguous tensors of the
layout's shape and the kernel's dtype on the CPU, not requiring grad, every size at least 2
(:func:`usable` checks the sizes), and a changed thread count finds its own kernels, so the guards refuse
a call only when other global state changed since the kernel's first call (e.g. deterministic
algorithms switched on, or a call from below autograd's dispatch keys); that call runs the plain ops.

Plain ops instead (:mod:`.bn_gaaf`; the same values up to rounding, plain ``addcmul`` may round x
differently from the kernel) on a non-CPU device, a z neither contiguous nor channels_last, an r
laid out otherwise than z (a grad laid out otherwise is copied into z's layout), a size below 2, a
tensor under :data:`~.kernels.EAGER_COMPILE_MIN_NUMEL` elements, grad mode on, or compiling off
(``GAAF_NO_COMPILE=1``) or failed (:func:`forward` / :func:`backward` return None then).
"""
from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.fx.experimental._config as fx_config

from . import compile_cache, kernels
from .fused import _alias
from .kernels import EAGER_COMPILE_MIN_NUMEL, _Consts, _add_compile_seconds, _announce, _give_up
from .pointwise import _bwd, _fwd
from .spec import GAAFSpec

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

Tensor = torch.Tensor

_SOURCE = """
def {name}_fwd(z, a, b):  # z: (N, C, L) and a, b: (C, 1), or z: (M, C) and a, b: (C,); contiguous
    return _fwd(z * a + b, _Consts({consts}))

def {name}_fwd_r(z, a, b, r):
    return _fwd(z * a + b + r, _Consts({consts}))

def {name}_bwd(z, a, b, grad):
    return _bwd(z * a + b, grad, _Consts({consts}))

def {name}_bwd_r(z, a, b, r, grad):
    return _bwd(z * a + b + r, grad, _Consts({consts}))
"""
_KINDS = ("fwd", "fwd_r", "bwd", "bwd_r")

#: the batch statistics (mean, biased variance) per channel: one pass (Welford) over z, per layout
_STATS_SOURCE = """
def gaaf_bn_stats(z):  # (N, C, L)
    var, mean = torch.var_mean(z, dim=(0, 2), correction=0)
    return mean, var

def gaaf_bn_stats_cl(z):  # (M, C)
    var, mean = torch.var_mean(z, dim=0, correction=0)
    return mean, var
"""
_stats_cache: "dict[tuple[torch.dtype, str, int], _BNKernel]" = {}

_cache: "dict[tuple[GAAFSpec, torch.dtype, int], dict[str, _BNKernel]]" = {}
_lock = threading.Lock()
_names = itertools.count()


class _BNKernel:
    """One kernel: loaded from the cache or compiled ahead of time on its first call. Every call
    checks the kernel's guards first (``guard_check``, a boolean: no error message is built) and
    returns None where they refuse the arguments, so the caller runs the plain ops instead."""

    __slots__ = ("_compiled", "_path", "_namespace", "_fast")

    def __init__(self, compiled: Callable, path: "Path", namespace: "dict[str, object]") -> None:
        self._compiled, self._path, self._namespace = compiled, path, namespace
        self._fast: Optional[Callable] = None

    def _first_call(self, args: "tuple[Tensor, ...]") -> Callable:
        t0 = time.perf_counter()
        try:
            fast = compile_cache.load(self._path, self._namespace)
            if fast is None or not fast.guard_check(*args):  # absent, or saved under other global state
                _announce()
                with fx_config.patch(use_duck_shape=False):  # equal sizes stay separate symbols
                    fast = self._compiled.aot_compile((args, {}))  # type: ignore[attr-defined]
                compile_cache.save(self._path, fast)
            fast.disable_guard_check()  # checked here, by guard_check, instead
            return fast
        finally:
            _add_compile_seconds(time.perf_counter() - t0)

    def run(self, *args: Tensor) -> Optional[Tensor]:
        fast = self._fast
        if fast is None:
            fast = self._fast = self._first_call(args)
        if not fast.guard_check(*args):
            return None
        return fast(*args)


def _build(spec: GAAFSpec, dtype: torch.dtype, threads: int) -> "dict[str, _BNKernel]":
    consts = kernels.spec_literals(spec)
    name = f"gaaf_bn_{next(_names)}"
    namespace: "dict[str, object]" = {"_fwd": _fwd, "_bwd": _bwd, "_Consts": _Consts}
    exec(compile(_SOURCE.format(name=name, consts=consts), f"<gaaf bn kernel {name}>", "exec"), namespace)
    cache_source = _SOURCE.format(name="gaaf_bn", consts=consts)
    # one kernel per layout: the same function compiled for (N, C, L) with (C, 1) and for (M, C) with (C,)
    return {kind + layout: _BNKernel(torch.compile(namespace[f"{name}_{kind}"], dynamic=True, fullgraph=True),
                                     compile_cache.entry_path(cache_source, dtype, "cpu",
                                                              f"bn_{kind}{layout}-t{threads}"), namespace)
            for kind in _KINDS for layout in ("", "_cl")}


def _cached(cache: dict, key: object, build: "Callable[[], object]") -> "object":
    """cache[key], built once under the lock on first use."""
    found = cache.get(key)
    if found is None:
        with _lock:
            found = cache.get(key)
            if found is None:
                found = cache[key] = build()
    return found


def _kernel(spec: GAAFSpec, dtype: torch.dtype, kind: str) -> _BNKernel:
    """The kernel for (spec, dtype, kind) under the current torch thread count (as :mod:`.kernels`:
    Inductor's CPU code fixes its thread count, so each count has its own kernels)."""
    threads = torch.get_num_threads()  # a kernel's guards hold the thread count it was compiled under
    return _cached(_cache, (spec, dtype, threads), lambda: _build(spec, dtype, threads))[kind]  # type: ignore[index]


def _build_stats(dtype: torch.dtype, layout: str, threads: int) -> _BNKernel:
    namespace: "dict[str, object]" = {"torch": torch}
    exec(compile(_STATS_SOURCE, "<gaaf bn stats kernels>", "exec"), namespace)
    path = compile_cache.entry_path(_STATS_SOURCE, dtype, "cpu", f"bn_stats{layout}-t{threads}")
    return _BNKernel(torch.compile(namespace[f"gaaf_bn_stats{layout}"], dynamic=True, fullgraph=True), path, namespace)


def _stats_kernel(dtype: torch.dtype, layout: str) -> _BNKernel:
    threads = torch.get_num_threads()
    return _cached(_stats_cache, (dtype, layout, threads), lambda: _build_stats(dtype, layout, threads))  # type: ignore[return-value]


def _channels_last(z: Tensor) -> bool:
    return z.dim() == 4 and not z.is_contiguous() and z.is_contiguous(memory_format=torch.channels_last)


def _view(z: Tensor) -> "tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str]":
    """(shape, strides) of z's memory as the kernels see it, α's and β's shape, and the layout's
    kernel suffix: (N, C, L = H·W) and (C, 1) for a contiguous z, (M = N·H·W, C) and (C,) for a
    channels_last one."""
    n, c = z.shape[0], z.shape[1]
    if _channels_last(z):
        m = z.numel() // c
        return (m, c), (c, 1), (c,), "_cl"
    length = z.numel() // max(n * c, 1)
    return (n, c, length), (c * length, length, 1), (c, 1), ""


def usable(z: Tensor, residual: Optional[Tensor] = None, spec: Optional[GAAFSpec] = None) -> bool:
    """Whether the compiled kernels may take this call (see the module doc); without a spec, the
    statistics kernel."""
    if (spec is not None and callable(spec.shape)) or z.device.type != "cpu" or z.numel() < EAGER_COMPILE_MIN_NUMEL:
        return False
    if not (z.is_contiguous() or _channels_last(z)):
        return False
    if residual is not None and residual.stride() != z.stride():
        return False
    shape, _, _, _ = _view(z)
    return min(shape) >= 2 and not torch.is_grad_enabled() and kernels.eager_compile_enabled()


def batch_stats(z: Tensor) -> "Optional[tuple[Tensor, Tensor]]":
    """(mean, biased variance) of z per channel in one pass (call where :func:`usable`), or None
    where compiling failed or the kernel's guards refuse the call."""
    shape, stride, _, layout = _view(z)
    try:
        return _stats_kernel(z.dtype, layout).run(_alias(z, shape, stride))
    except Exception as err:  # noqa: BLE001 - compile errors surface on the first call
        _give_up(err)
        return None


def _call(kind: str, z: Tensor, alpha: Tensor, beta: Tensor, residual: Optional[Tensor],
          spec: GAAFSpec, grad: Optional[Tensor] = None) -> Optional[Tensor]:
    shape, stride, affine_shape, layout = _view(z)
    affine_stride = (1,) * len(affine_shape)
    args = [_alias(z, shape, stride), _alias(alpha.contiguous(), affine_shape, affine_stride),
            _alias(beta.contiguous(), affine_shape, affine_stride)]
    if residual is not None:
        args.append(_alias(residual, shape, stride))
        kind += "_r"
    if grad is not None:
        if grad.stride() != z.stride():  # e.g. an expanded (stride 0) grad: a copy in z's layout
            grad = torch.empty_strided(z.shape, z.stride(), dtype=grad.dtype, device=grad.device).copy_(grad)
        args.append(_alias(grad, shape, stride))
    try:
        out = _kernel(spec, z.dtype, kind + layout).run(*args)
    except Exception as err:  # noqa: BLE001 - compile errors surface on the first call
        _give_up(err)
        return None
    return None if out is None else _alias(out, z.shape, z.stride())


def forward(z: Tensor, alpha: Tensor, beta: Tensor, residual: Optional[Tensor], spec: GAAFSpec) -> Optional[Tensor]:
    """φ_new(z·α + β [+ r]) through the compiled kernel (call where :func:`usable`), or None where
    compiling failed or the kernel's guards refuse the call (use the plain ops)."""
    return _call("fwd", z, alpha, beta, residual, spec)


def backward(z: Tensor, alpha: Tensor, beta: Tensor, residual: Optional[Tensor], grad: Tensor,
             spec: GAAFSpec) -> Optional[Tensor]:
    """grad·φ_new'(z·α + β [+ r]) through the compiled kernel, or None (use the plain ops)."""
    return _call("bwd", z, alpha, beta, residual, spec, grad)


def _reset_for_tests() -> None:
    with _lock:
        _cache.clear()
        _stats_cache.clear()


__all__ = ["usable", "batch_stats", "forward", "backward"]
