"""Eager fusion: the pointwise GAAF math compiled once per (spec, dtype, device) by ``torch.compile``.

Plain eager PyTorch runs the ~15 elementwise ops of GAAF as ~15 kernels, each reading and writing
a whole tensor. Compiled, forward and backward are one loop each. Kernels are built lazily, on
first use, for 1-D contiguous inputs with a dynamic length (``dynamic=True``): the fused op hands
them a flat view of the tensor's storage, so shapes and memory layouts never cause a recompile.
The spec's numbers are constants baked into the generated code (see :func:`_build`). On CPU
each kernel is compiled ahead of time on its first call and then runs without Dynamo's per-call
guard check (:class:`_Kernel`); it is saved on disk and later processes load it instead of
compiling (:mod:`.compile_cache`); where it gives bitwise the same result, the kernel's generated
code is then called without Dynamo's and AOTAutograd's runtime wrappers (:mod:`.direct_call`).
The first compile in a process says so once on stderr
(``GAAF_QUIET=1`` silences it); :func:`compile_seconds` counts the one-off seconds.

The plain math is used instead, with identical results up to floating-point rounding:

* when disabled: ``GAAF_NO_COMPILE=1`` in the environment, or :func:`set_eager_compile(False)
  <set_eager_compile>`;
* after compilation failed once (warned once, remembered for the process);
* for a callable shape (it may not be traceable), and tensors under
  :data:`EAGER_COMPILE_MIN_NUMEL` elements (launch overhead dominates, and tests stay fast);
* inside an outer ``torch.compile`` / export / ``torch.jit`` trace (decided in :mod:`.fused`).
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import torch

from . import compile_cache
from .direct_call import direct_runner
from .pointwise import _bwd, _fwd

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from .spec import GAAFSpec

Tensor = torch.Tensor

#: Tensors with fewer elements run the plain math (a compiled call costs tens of microseconds).
EAGER_COMPILE_MIN_NUMEL = 1 << 15

_enabled: Optional[bool] = None  # None: follow the GAAF_NO_COMPILE environment variable
_failed: Optional[str] = None  # why compilation was given up, once it failed
_cache: "dict[tuple[GAAFSpec, torch.dtype, str], tuple[_Kernel, _Kernel]]" = {}  # (spec, dtype, device type)
_lock = threading.Lock()
_names = itertools.count()  # unique kernel names (for Dynamo's logs and caches)
_compile_seconds = 0.0  # total seconds of kernels' first calls (compile or cache load), see compile_seconds
_announced = False  # the "compiling" line was printed (once per process)


def set_eager_compile(enabled: Optional[bool]) -> None:
    """Turn the compiled eager kernels on (True) or off (False); None (the default) follows the
    environment: off where ``GAAF_NO_COMPILE=1``. An explicit True/False wins over the environment.

    Either way the results agree to floating-point rounding; off is slower but never compiles.
    """
    global _enabled
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"set_eager_compile takes True, False or None, got {enabled!r}")
    _enabled = enabled


def eager_compile_enabled() -> bool:
    """Whether eager calls may use compiled kernels (not disabled, and compilation has not failed)."""
    if _failed is not None:
        return False
    if _enabled is not None:  # an explicit choice wins over the environment
        return _enabled
    return not _env_disabled()


def no_compile_env() -> bool:
    """Whether ``GAAF_NO_COMPILE`` (1/true/yes/on) asks to compile nothing."""
    return _env_disabled()


_env_seen: "dict[str, tuple[Optional[str], bool]]" = {}  # name -> (raw value, parsed) last read


def env_flag(name: str) -> bool:
    """Whether the environment variable `name` is set to 1/true/yes/on (any case, spaces ignored).
    Parsed only when its value changed since the last read: a dict look-up per call on hot paths."""
    raw = os.environ.get(name)
    seen = _env_seen.get(name)
    if seen is None or seen[0] != raw:
        seen = _env_seen[name] = (raw, (raw or "").strip().lower() in ("1", "true", "yes", "on"))
    return seen[1]


def _env_disabled() -> bool:
    return env_flag("GAAF_NO_COMPILE")


class _Consts(NamedTuple):
    """The spec's fields, rebuilt inside a kernel from literals so Dynamo sees constants."""

    base: str
    shape: str
    frequency: float
    variant: str
    shape_params: "dict[str, float]"


_KERNEL_SOURCE = """
def {name}_fwd(x):  # x: (n,) contiguous
    return _fwd(x, _Consts({consts}))

def {name}_bwd(x, grad):  # x, grad: (n,) contiguous
    return _bwd(x, grad, _Consts({consts}))
"""


def spec_literals(spec: "GAAFSpec") -> str:
    """The spec's fields as Python literals, ``_Consts``' arguments in generated kernel source."""
    return ", ".join([repr(spec.base), repr(spec.shape), repr(float(spec.frequency)), repr(spec.variant),
                      repr({k: float(v) for k, v in spec.shape_params.items()})])


def _build(spec: "GAAFSpec", name: str, dtype: torch.dtype, device_type: str) -> "tuple[_Kernel, _Kernel]":
    """Compile forward and backward for one spec.

    The spec's numbers are written into generated source as literals (``repr`` of a float
    round-trips exactly): closure or global floats would become runtime inputs of the kernel
    (Dynamo does not specialize floats), costing a load and a true division per element. Each
    exec also makes fresh code objects, so Dynamo's per-code-object cache (and its recompile
    limit) holds one entry per kernel however many specs a program uses.
    """
    consts = spec_literals(spec)
    namespace: "dict[str, object]" = {"_fwd": _fwd, "_bwd": _bwd, "_Consts": _Consts}
    source = _KERNEL_SOURCE.format(name=name, consts=consts)
    exec(compile(source, f"<gaaf kernel {name}>", "exec"), namespace)
    fwd, bwd = namespace[f"{name}_fwd"], namespace[f"{name}_bwd"]
    cache_source = _KERNEL_SOURCE.format(name="gaaf", consts=consts)  # the kernel, whatever its name here
    threads = f"-t{torch.get_num_threads()}" if device_type == "cpu" else ""  # see _kernels
    return tuple(  # type: ignore[return-value]
        _Kernel(torch.compile(f, dynamic=True, fullgraph=True), device_type,
                compile_cache.entry_path(cache_source, dtype, device_type, direction + threads), namespace)
        for f, direction in ((fwd, "fwd"), (bwd, "bwd")))


class _Kernel:
    """One compiled kernel. On CPU the first call loads it from gaaf's on-disk cache
    (:mod:`.compile_cache`) or else compiles it ahead of time for its arguments (``aot_compile``)
    and saves it there; later calls skip Dynamo's per-call frame evaluation and guard check,
    which would otherwise cost about as much as the kernel itself. That is safe here because every
    call has the same kind of arguments as the first: 1-D contiguous tensors of this kernel's dtype
    and device, not requiring grad, any length ≥ :data:`EAGER_COMPILE_MIN_NUMEL` (the length is
    symbolic). Elsewhere (CUDA: a device index may change between calls) and wherever ahead-of-time
    compilation is unavailable (e.g. compile caches disabled) it stays the guarded
    ``torch.compile`` function. The first call's seconds are added to :func:`compile_seconds`.
    """

    __slots__ = ("compiled", "run", "_path", "_namespace")

    def __init__(self, compiled: Callable, device_type: str, path: "Path", namespace: "dict[str, object]") -> None:
        self.compiled = compiled
        self._path, self._namespace = path, namespace
        self.run: Callable = self._first_call if device_type == "cpu" else self._first_guarded_call

    def _first_call(self, *args: Tensor) -> Tensor:
        t0 = time.perf_counter()
        try:
            loaded = _load_cached(self._path, self._namespace, args)
            if loaded is not None:
                fast, result = loaded
            else:
                _announce()
                try:
                    fast = self.compiled.aot_compile((args, {}))  # type: ignore[attr-defined]
                except Exception:  # not available here: keep the guarded function
                    self.run = self.compiled
                    return self.compiled(*args)
                compile_cache.save(self._path, fast)
                fast.disable_guard_check()
                result = fast(*args)
            self.run = direct_runner(fast, args, result) or fast
            return result
        finally:
            _add_compile_seconds(time.perf_counter() - t0)

    def _first_guarded_call(self, *args: Tensor) -> Tensor:
        t0 = time.perf_counter()
        _announce()
        try:
            self.run = self.compiled
            return self.compiled(*args)
        finally:
            _add_compile_seconds(time.perf_counter() - t0)


def _load_cached(path: "Path", namespace: "dict[str, object]",
                 args: "tuple[Tensor, ...]") -> "Optional[tuple[Callable, Tensor]]":
    """(the kernel saved at `path`, its result on `args`); None to compile it instead."""
    fast = compile_cache.load(path, namespace)
    if fast is None:
        return None
    fast.disable_guard_check()
    try:
        return fast, fast(*args)  # a loaded kernel that cannot run is as good as absent
    except Exception as err:  # noqa: BLE001
        compile_cache._report(path, err)
        return None


def _announce() -> None:
    """Say once per process, on stderr, that compiling starts (it takes seconds); GAAF_QUIET=1 silences it."""
    global _announced
    if _announced:
        return
    _announced = True
    if env_flag("GAAF_QUIET"):
        return
    print(f"gaaf: compiling the fused GAAF kernels (once per machine; cached in {compile_cache.cache_dir()})",
          file=sys.stderr, flush=True)


def _add_compile_seconds(seconds: float) -> None:
    global _compile_seconds
    with _lock:
        _compile_seconds += seconds


def compile_seconds() -> float:
    """Seconds this process has spent in kernels' first calls (compiling, or loading from the
    cache): a one-off cost that throughput figures leave out (differences of two readings)."""
    return _compile_seconds


def cache_key(spec: "GAAFSpec", x: Tensor) -> "tuple[GAAFSpec, torch.dtype, str, int]":
    """(spec, dtype, device type, torch threads on CPU else 0): which kernels serve `x` (see _kernels).
    A spec is hashable; equal specs share kernels."""
    return (spec, x.dtype, x.device.type, torch.get_num_threads() if x.device.type == "cpu" else 0)


def _kernels(spec: "GAAFSpec", x: Tensor) -> "tuple[_Kernel, _Kernel]":
    """The kernels for (spec, dtype, device type) and, on CPU, the current torch thread count.

    Inductor's CPU code fixes its OpenMP thread count when it is generated, and the kernels run
    without guards: one built under 1 thread (a `gaaf sweep --jobs auto` job) would run on one core
    in a 2-thread process (measured: 2,097,152 elements forward + backward, 6.7–8.6 ms against
    3.7–4.1 ms on a 2-core Xeon), and one built under 2 threads would oversubscribe a 1-thread job.
    So each thread count has its own kernels, in memory and on disk (``fwd-t2``, ``bwd-t1``, ...)."""
    key = cache_key(spec, x)
    kernels = _cache.get(key)
    if kernels is None:
        with _lock:
            kernels = _cache.get(key)
            if kernels is None:
                kernels = _cache[key] = _build(spec, f"gaaf_{next(_names)}", x.dtype, x.device.type)
    return kernels


def _usable(spec: "GAAFSpec", x: Tensor) -> bool:
    return not callable(spec.shape) and x.numel() >= EAGER_COMPILE_MIN_NUMEL and eager_compile_enabled()


def _give_up(err: BaseException) -> None:
    global _failed
    first = (str(err).strip().splitlines() or [""])[0][:200]
    _failed = f"{type(err).__name__}: {first}"
    warnings.warn(
        f"gaaf: compiling the fused GAAF kernels failed ({_failed}); using the unfused eager math "
        "from now on (same results, slower). Set GAAF_NO_COMPILE=1 to skip compiling.",
        RuntimeWarning,
        stacklevel=3,
    )


def forward_flat(x: Tensor, spec: "GAAFSpec") -> Tensor:
    """φ(x) + g(x)·s(x) of a 1-D contiguous tensor: the compiled kernel where usable, else plain."""
    if _usable(spec, x):
        try:
            return _kernels(spec, x)[0].run(x)
        except Exception as err:  # compile errors surface on the first call
            _give_up(err)
    return _fwd(x, spec)


def backward_flat(x: Tensor, grad: Tensor, spec: "GAAFSpec") -> Tensor:
    """grad·φ_new'(x) of 1-D contiguous tensors: the compiled kernel where usable, else plain."""
    if _usable(spec, x):
        try:
            return _kernels(spec, x)[1].run(x, grad)
        except Exception as err:
            _give_up(err)
    return _bwd(x, grad, spec)


def compile_failure() -> Optional[str]:
    """Why compilation was given up (``"Type: message"``), or None if it has not failed."""
    return _failed


def _reset_for_tests() -> None:
    """Forget compiled kernels and a recorded failure (tests only)."""
    global _failed, _announced
    with _lock:
        _cache.clear()
        _failed = None
        _announced = False
    compile_cache._reset_for_tests()


__all__ = [
    "EAGER_COMPILE_MIN_NUMEL", "set_eager_compile", "eager_compile_enabled", "no_compile_env", "forward_flat",
    "backward_flat", "compile_failure", "compile_seconds",
]
