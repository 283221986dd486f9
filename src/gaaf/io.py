"""Atomic file writes: every file gaaf writes goes to a temp file in the same folder, is
flushed and fsynced, then renamed over the target. A crash leaves the old file or the new
one, never half of either.

Written files get the mode a plain ``open(path, "w")`` would give them (0o666 less the process's
umask), not mkstemp's private 0o600: results are meant to be read by others.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel reports it (Linux ≥ 4.7);
    elsewhere set-and-restore (not thread-safe for that instant, as any umask query there)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open()`` (0o666) or ``mkdir()`` (0o777) gives a new file or folder under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside `path` for writing; on clean exit rename it to `path`.

    On an exception the temp file is removed and `path` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save(path: str | os.PathLike, save: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever `save(fileobj)` writes, e.g. ``lambda f: torch.save(obj, f)``
    or ``lambda f: fig.savefig(f, format="png")``."""
    with atomic_open(path, "wb") as f:
        save(f)
