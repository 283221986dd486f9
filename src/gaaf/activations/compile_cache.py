"""The on-disk cache of compiled GAAF kernels, so a new process (a sweep's next run, a resume)
loads the kernels instead of compiling them again.

Why gaaf keeps its own cache: the CPU kernels are compiled ahead of time (``aot_compile``, see
:mod:`.kernels`), and that path bypasses Inductor's FX-graph and AOTAutograd caches, so a second
process would redo Dynamo's trace, AOTAutograd and Inductor's code generation (only the C++ build
is cached by Inductor). Here each compiled kernel is serialized whole
(``AOTCompiledFunction.serialize``) and later deserialized, which skips all of that; loading
still imports Inductor and builds the kernel's C++ once per machine if Inductor's own cache
(``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``) lost it.

Where: ``$GAAF_CACHE_DIR/compile/<key>/`` (default ``$XDG_CACHE_HOME/gaaf``, else ``~/.cache/gaaf``),
where ``<key>`` names the Python and torch versions, the CPU capability torch dispatches to
(``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY`` can lower; the
generated code depends on it and Inductor's cache is not keyed on it) and the gaaf version. A
file's name hashes the kernel (spec constants, dtype, direction) and the source of
``gaaf.activations``, so editing the math never loads a stale kernel. Entries are written
atomically; an unreadable or incompatible entry is reported once per process and compiled again.
Deleting the folder is always safe.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..io import atomic_write_bytes

_warned = False  # an unreadable entry was reported (once per process)


def cache_root() -> Path:
    """``$GAAF_CACHE_DIR``, else ``$XDG_CACHE_HOME/gaaf``, else ``~/.cache/gaaf``."""
    explicit = os.environ.get("GAAF_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gaaf"


def cache_key() -> str:
    """``py3.11-torch2.13.0+cpu-AVX2-gaaf0.1.0``: what the compiled code depends on besides the kernel."""
    from .. import __version__  # the package root's version string (no torch-level import)

    capability = torch.backends.cpu.get_cpu_capability()
    raw = f"py{sys.version_info[0]}.{sys.version_info[1]}-torch{torch.__version__}-{capability}-gaaf{__version__}"
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", raw)


def cache_dir() -> Path:
    """The folder this process's compiled kernels are saved in and loaded from."""
    return cache_root() / "compile" / cache_key()


@functools.lru_cache(maxsize=1)
def _source_fingerprint() -> str:
    """sha256 of every module of ``gaaf.activations`` (the traced math lives there)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def entry_path(source: str, dtype: torch.dtype, device_type: str, direction: str) -> Path:
    """The file of one kernel: `source` is its generated Python source (spec constants included)."""
    h = hashlib.sha256("\0".join([_source_fingerprint(), source, str(dtype), device_type, direction]).encode())
    return cache_dir() / f"{direction}-{h.hexdigest()[:32]}.bin"


def load(path: Path, namespace: "dict[str, Any]") -> Optional[Callable]:
    """The kernel saved at `path`, its globals taken from `namespace`; None when there is none or it
    cannot be used (unreadable, truncated, written by another torch: reported once per process)."""
    try:
        data = path.read_bytes()
    except OSError:  # absent (the usual miss) or unreadable: compile
        return None
    try:
        from torch._dynamo.aot_compile import AOTCompiledFunction

        return AOTCompiledFunction.deserialize(data, namespace)
    except Exception as err:  # noqa: BLE001 - any broken entry: compile again (and overwrite it)
        _report(path, err)
        return None


def _report(path: Path, err: BaseException) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    first = (str(err).strip().splitlines() or [""])[0][:200]
    warnings.warn(f"gaaf: ignoring the unusable compiled-kernel cache entry {path} ({type(err).__name__}: "
                  f"{first}); compiling it again", RuntimeWarning, stacklevel=4)


def save(path: Path, compiled: Any) -> None:
    """Write `compiled` (an ``AOTCompiledFunction``) to `path` atomically. A kernel that cannot be
    serialized or a cache folder that cannot be written only costs the next process a compile."""
    try:
        data = type(compiled).serialize(compiled).serialized_data
        atomic_write_bytes(path, data)
    except Exception:  # noqa: BLE001 - the cache is an optimization; never fail the run for it
        pass


def _reset_for_tests() -> None:
    global _warned
    _warned = False


__all__ = ["cache_root", "cache_key", "cache_dir", "entry_path", "load", "save"]
