"""Fetch, verify and unpack data files — never leaving half a file or half a folder behind.

- `ensure_file` returns a local file, downloading it if allowed; every download is streamed
  to a temp file beside the target, md5-checked, and only then renamed into place.
- `extract_tar` unpacks one top-level folder of a tar archive into a temp folder and renames it
  into place, refusing links, devices, absolute paths and `..` (no member may escape).
- Every failure is one `UserError` line that names the URL and the exact path to put the file at.

Set GAAF_DATA_MIRROR to a base URL to fetch every file from there instead (tests use a local
http.server; a lab may use an internal mirror).
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from ..errors import UserError
from ..io import default_mode
from .base import MIRROR_ENV, corrupt

_CHUNK = 1 << 20  # bytes per read while streaming and hashing
_TIMEOUT_S = 60.0  # seconds without progress before a download counts as failed


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def ensure_file(
    name: str, url: str, path: Path, md5: str | None, *, download: bool, verify_existing: bool, quiet: bool | None = None
) -> Path:
    """`path`, downloaded from `url` first if it is missing and `download` is allowed.

    A file already present is md5-checked only when `verify_existing` (archives before
    unpacking); a bad checksum is reported with the fix, never used.
    """
    if path.is_file():
        if verify_existing and md5 is not None:
            got = md5sum(path)
            if got != md5:
                raise UserError(
                    f"{name}: {path} has md5 {got}, expected {md5} (truncated or corrupt download); "
                    f"delete it and run again, or fetch {url} yourself"
                )
        return path
    if not download:
        raise UserError(
            f"{name}: {path} not found and downloading is off (--no-download); "
            f"download {url} and put it at {path}, or allow downloading"
        )
    return fetch(name, url, path, md5, quiet=quiet)


def fetch(name: str, url: str, path: Path, md5: str | None, *, quiet: bool | None = None) -> Path:
    """Download `url` to `path` via a temp file; check length and md5; rename into place."""
    if quiet is None:
        quiet = not sys.stderr.isatty()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    hint = f"download it yourself and put it at {path}, or set {MIRROR_ENV} to a mirror"
    try:
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, "wb") as out:
            h = hashlib.md5()
            got = 0
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:  # noqa: S310 (fixed https/http URLs)
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=quiet, file=sys.stderr) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if total is not None and got != total:
            raise UserError(f"{name}: download of {url} stopped after {got} of {total} bytes; try again, or {hint}")
        if md5 is not None and h.hexdigest() != md5:
            raise UserError(
                f"{name}: {url} arrived with md5 {h.hexdigest()}, expected {md5} (corrupt download or wrong mirror); "
                f"try again, or {hint}"
            )
        os.replace(tmp, path)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        # HTTPError's str carries the status ("HTTP Error 404: Not Found"); URLError's is in .reason
        reason = e if isinstance(e, urllib.error.HTTPError) else (getattr(e, "reason", None) or e)
        raise UserError(f"{name}: could not download {url} ({' '.join(str(reason).split())}); {hint}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _check_member(name: str, archive: Path, m: tarfile.TarInfo) -> None:
    """Refuse anything but plain files and folders with relative paths that stay inside."""
    parts = Path(m.name).parts
    if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
        raise UserError(
            f"{name}: {archive} holds an unsafe member {m.name!r} (link, device, absolute or '..' path); "
            "refusing to unpack it — delete the archive and download the official one"
        )


def extract_tar(name: str, archive: Path, folder: str) -> Path:
    """Unpack `folder/` from `archive` to `archive.parent/folder` atomically; return that path.

    Streams the archive once (members are checked and extracted as they are read). An existing
    incomplete `folder/` is replaced only after the new one is complete.
    """
    root = archive.parent
    target = root / folder
    fix = "delete it and run again (it will be downloaded afresh), or fetch the official archive yourself"
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=".extract", dir=root))
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                _check_member(name, archive, m)
                if m.name == folder or m.name.startswith(folder + "/"):
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the library's own safety net too
                        tar.extract(m, tmp, filter="data")
                    else:  # pragma: no cover - older Pythons; _check_member already vetted m
                        tar.extract(m, tmp)
        if not (tmp / folder).is_dir():
            raise UserError(f"{name}: {archive} has no folder {folder}/ inside; {fix}")
        if target.exists():  # an incomplete earlier copy: move aside, then swap in the new one
            os.replace(target, tmp / ".old")
        os.replace(tmp / folder, target)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise corrupt(name, archive, e, fix) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
