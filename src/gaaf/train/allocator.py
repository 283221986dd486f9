"""Keep freed memory in the training process: no page faults from the allocator giving memory back.

PyTorch's CPU tensors come from glibc's malloc. By default glibc serves blocks above a dynamic
threshold (128 KiB, rising to at most 32 MiB) with fresh ``mmap`` calls and gives the top of the heap
back to the kernel once more than twice that threshold is free there (``M_TRIM_THRESHOLD``). A
training step frees most of its activations in the backward pass and allocates them again in the
next forward, so the same memory goes back and forth every step: each 4 KiB page is then faulted
in and zeroed by the kernel again. Measured on ResNet20 v1, batch 128, one thread (the README's
`gaaf bench train` notes): 3–7 k minor page faults per step for relu and 6–12 k for gaaf_relu (its
larger peak, one saved input per site, frees and re-faults more), 10–20 ms of system time per step;
with the settings below ~0–1 k and 3–5 ms for both.

:func:`keep_freed_memory` sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to 1 GiB with
``mallopt``: blocks up to 1 GiB come from the heap and freed memory stays in the process for the
next step. The process's resident memory then stays at its peak (it would reach it every step
anyway). Only glibc on Linux has ``mallopt``; elsewhere it does nothing. ``GAAF_KEEP_MEMORY=0``
turns it off. Called by ``gaaf train`` (and so by every sweep run) and by the training benchmarks.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30

_done: "bool | None" = None  # the outcome, once tried (per process)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory (see the module docstring); True where it took effect.
    Safe to call more than once: the first call decides."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("GAAF_KEEP_MEMORY", "").strip().lower() in ("0", "false", "no", "off"):
        return _done
    if not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return _done
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    return _done


__all__ = ["keep_freed_memory"]
