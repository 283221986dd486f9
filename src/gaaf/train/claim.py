"""Claiming a run folder, so that only one process at a time trains into it.

A claim is an exclusive `flock(2)` on OUT/claim.lock, taken without waiting and held for the
whole training; OUT/claim.json says who holds it (host, pid, since). The kernel drops the lock
when the last process holding it ends, however it ends (SIGKILL included), so a claim never
outlives its process and a folder left by a killed run is simply claimed again.

    with take(out):            # ClaimBusy (a UserError) when a live process holds it
        ...train into out...

Who holds it: `gaaf train` takes it itself. `gaaf sweep` takes it before it touches a run folder
and hands it to its `gaaf train` child: the child inherits the locked file (Popen pass_fds, its
number in $GAAF_CLAIM_FD) and `take` adopts it instead of locking again. The lock belongs to the
open file, shared by parent and child, so it lasts while either of them is alive. Under Ray the
task takes it on the worker, where the training runs.

The holder removes claim.lock and claim.json when it is done. It unlinks the lock file while
still holding it, so a process that opened the old file meanwhile finds, once it gets the lock,
that the path names another file now, and tries again: two holders can never lock different files.

File systems: flock works on local file systems and on NFS (Linux >= 2.6.12 emulates it there with
a whole-file fcntl byte-range lock, seen by every client; not with the `nolock` or `local_lock`
mount options). Where the file system refuses locks, a warning is printed and the run goes on
unprotected. claim.lock is the one file not written through gaaf.io: it is never written at all.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import atomic_write_json

try:
    import fcntl
except ImportError:  # not a POSIX system: no claims (a warning says so)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "claim.lock"
INFO_FILE = "claim.json"
#: environment variable naming the inherited, already locked claim.lock of a `gaaf sweep` child
ENV_FD = "GAAF_CLAIM_FD"
#: flock errors meaning "another process holds it" (EACCES: some network file systems)
_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES}


class ClaimBusy(UserError):
    """The run folder is claimed by another live process."""

    def __init__(self, folder: Path, holder: str):
        super().__init__(f"{folder} is being trained by another process ({holder}); "
                         "wait for it to finish or choose another --out")  # fmt: skip
        self.folder, self.holder = folder, holder


class Claim:
    """A held claim on `folder` (see the module docstring); release() or leave the with-block to drop it."""

    def __init__(self, folder: Path, fd: int | None, *, owner: bool, made: bool):
        self.folder, self.fd = folder, fd
        self.owner = owner  # took it itself (removes the claim files); False: adopted from the parent
        self.made = made  # created the folder (removes it again while it is empty)

    def child_env(self) -> dict[str, str]:
        """Environment entries that let a child process adopt this claim (with pass_fds=self.pass_fds())."""
        return {ENV_FD: str(self.fd)} if self.fd is not None else {}

    def pass_fds(self) -> tuple[int, ...]:
        return (self.fd,) if self.fd is not None else ()

    def release(self) -> None:
        if self.owner:
            for name in (INFO_FILE, LOCK_FILE):  # while still locked: see the module docstring
                with contextlib.suppress(OSError):
                    (self.folder / name).unlink()
            if self.made:
                with contextlib.suppress(OSError):
                    self.folder.rmdir()  # only while empty: a run that wrote nothing leaves nothing
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def take(folder: str | os.PathLike) -> Claim:
    """Claim `folder` (created if needed) for this process, or adopt the claim a parent passed down.
    Raises ClaimBusy when a live process holds it, UserError when the folder cannot be written."""
    folder = Path(folder)
    adopted = _adopt(folder)
    if adopted is not None:
        return adopted
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _lock(folder)
    except OSError as e:
        raise UserError(f"cannot write to --out {folder}: {e.strerror or e}") from None
    if fd is not None:
        with contextlib.suppress(OSError):
            atomic_write_json(folder / INFO_FILE, _me())
    return Claim(folder, fd, owner=True, made=made)


def holder(folder: str | os.PathLike) -> str:
    """`host, pid 123, since 2025-01-31T12:00:00` from claim.json ("unknown" when it cannot be read)."""
    try:
        info = json.loads((Path(folder) / INFO_FILE).read_text(encoding="utf-8"))
        return f"{info['host']}, pid {info['pid']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def claimed_by(folder: str | os.PathLike) -> str:
    """Who seems to train into `folder` now, read from claim.json without touching the lock (a probe
    of the lock could make a sweep that claims at that moment skip the run): "" when there is no
    claim.json or its holder is a process of this host that no longer exists. A holder on another
    host is taken at its word, with a note (a killed one there leaves its claim.json behind)."""
    try:
        info = json.loads((Path(folder) / INFO_FILE).read_text(encoding="utf-8"))
        host, pid = str(info["host"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if host != socket.gethostname():
        return f"{holder(folder)}, unless it was killed there"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except OSError:  # EPERM: it exists, owned by someone else
        pass
    return holder(folder)


def _lock(folder: Path) -> int | None:
    """The fd of folder/claim.lock, locked by us; None where the file system cannot lock."""
    path = folder / LOCK_FILE
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # NFS: an exclusive lock needs write access
        try:
            if fcntl is None:
                raise OSError(errno.ENOSYS, "no fcntl module on this system")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in _BUSY:
                os.close(fd)
                raise ClaimBusy(folder, holder(folder)) from None
            print(f"gaaf: warning: cannot lock {path} ({e.strerror or e}); nothing stops a second process "
                  "from training into this folder at the same time", file=sys.stderr, flush=True)  # fmt: skip
            os.close(fd)
            return None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the holder removed it while we waited for the lock: lock the new one
    raise UserError(f"cannot claim {folder}: {LOCK_FILE} keeps being replaced by other processes")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _adopt(folder: Path) -> Claim | None:
    """The claim a `gaaf sweep` parent took on `folder` and passed down, if $GAAF_CLAIM_FD names it."""
    raw = os.environ.get(ENV_FD)
    if not raw:
        return None
    try:
        fd = int(raw)
    except ValueError:
        return None
    if not _same_file(fd, folder / LOCK_FILE):  # meant for another folder (or a stale variable)
        return None
    os.environ.pop(ENV_FD, None)  # adopted once; our own children start from scratch
    os.set_inheritable(fd, False)
    with contextlib.suppress(OSError):
        atomic_write_json(folder / INFO_FILE, {**_me(), "parent_pid": os.getppid()})  # the trainer, for messages
    return Claim(folder, fd, owner=False, made=False)


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
