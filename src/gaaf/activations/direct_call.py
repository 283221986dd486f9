"""Calling an ahead-of-time compiled kernel's generated code directly, without its runtime wrappers.

An ``AOTCompiledFunction`` (what :mod:`.kernels` builds or loads for each eager GAAF kernel) runs
its Inductor code through Dynamo's frame wrapper and AOTAutograd's runtime wrappers: about ten
Python frames per call, which at a ResNet's small activation sites cost more than the kernel
(counted with ``sys.setprofile`` on a 32,768-element forward+backward of the op: 324 Python and C
calls with the wrappers, 172 without). For a 1-D kernel of plain tensors those wrappers do nothing the kernel needs
(no autograd, no aliasing, no subclasses, grad mode already off), so the Inductor module's own
``call([n, *tensors])`` is used instead.

This reaches into torch internals (the ``CompiledFxGraph`` behind the wrappers), so it is checked,
not assumed: :func:`direct_runner` returns a runner only if the structure is found AND the direct
call gives a result bitwise identical (same shape, strides, dtype and bits) to the wrapped call's
on the very arguments of the kernel's first call; otherwise None, and the wrapped function stays.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

Tensor = torch.Tensor

_INT_OF_SIZE = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _find_graph(fn: Any, depth: int = 0) -> Any:
    """The ``CompiledFxGraph`` inside an ``AOTCompiledFunction``'s wrappers (closures and
    ``compiled_fn`` attributes, a few levels deep), or None."""
    try:
        from torch._inductor.output_code import CompiledFxGraph
    except Exception:  # noqa: BLE001 - another torch: no direct path
        return None
    if isinstance(fn, CompiledFxGraph):
        return fn
    if depth > 8 or fn is None:
        return None
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            found = _find_graph(cell.cell_contents, depth + 1)
        except ValueError:  # an empty cell
            continue
        if found is not None:
            return found
    for attr in ("_artifacts", "compiled_fn"):
        inner = getattr(fn, attr, None)
        if inner is not None and inner is not fn:
            found = _find_graph(inner, depth + 1)
            if found is not None:
                return found
    return None


def bitwise_equal(a: Tensor, b: Tensor) -> bool:
    """Same shape, strides, dtype and bits (NaNs compare by their bits)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.stride() != b.stride() or a.device != b.device:
        return False
    as_int = _INT_OF_SIZE.get(a.element_size())
    if as_int is None or not (a.is_contiguous() and b.is_contiguous()):
        return bool(torch.equal(a, b))
    return bool(torch.equal(a.view(as_int), b.view(as_int)))


def direct_runner(compiled: Callable, args: "tuple[Tensor, ...]", expected: Tensor) -> Optional[Callable[..., Tensor]]:
    """A ``run(*tensors)`` calling `compiled`'s Inductor code directly, or None where that cannot be
    confirmed: `args` are 1-D tensors of one length n and `expected` is ``compiled(*args)``."""
    graph = _find_graph(compiled)
    call = getattr(graph, "current_callable", None)
    if call is None or not args:
        return None
    try:
        out = call([args[0].shape[0], *args])
        got = out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else None
    except Exception:  # noqa: BLE001 - another calling convention: keep the wrappers
        return None
    if not isinstance(got, Tensor) or not bitwise_equal(got, expected):
        return None

    def run(*tensors: Tensor) -> Tensor:
        return call([tensors[0].shape[0], *tensors])[0]

    return run


__all__ = ["bitwise_equal", "direct_runner"]
