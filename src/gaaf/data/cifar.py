"""CIFAR-10 and CIFAR-100 from the official python-pickle tarballs (Krizhevsky 2009).

On disk, under the data folder DIR:

    DIR/cifar-10-python.tar.gz            the archive (kept after unpacking; md5-checked before)
    DIR/cifar-10-batches-py/              data_batch_1..5, test_batch, batches.meta
    DIR/cifar-100-python.tar.gz
    DIR/cifar-100-python/                 train, test, meta (fine labels are used)

An unpacked folder that is complete is used as it is, without the archive (so a folder written
by another tool, or the ../shared/data proxy, works). Its files are validated by structure —
keys, dtype, shape, label range — since they need not be the official bytes.

The pickles are read with a restricted unpickler that only rebuilds numpy arrays, so a
tampered file cannot run code.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .base import RawData, corrupt, resolve_url
from .download import ensure_file, extract_tar

# the globals a CIFAR pickle (Python 2 original or Python 3 rewrite, numpy 1 or 2) may name
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (the originals are Python 2 pickles: latin1)."""
    with open(path, "rb") as f:
        obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"expected a dict, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


class CIFAR10:
    """The CIFAR-10 reader; class attributes say where the data lives and how to check it."""

    name = "cifar10"
    base_url = "https://www.cs.toronto.edu/~kriz/"
    archive = "cifar-10-python.tar.gz"
    archive_md5 = "c58f30108f718f92721af3b95e74349a"
    folder = "cifar-10-batches-py"
    train_files: tuple[str, ...] = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
    test_files: tuple[str, ...] = ("test_batch",)
    meta_file = "batches.meta"
    label_key = "labels"
    names_key = "label_names"
    num_classes = 10
    in_shape = (3, 32, 32)
    n_train, n_test = 50_000, 10_000  # images in the official splits

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    @property
    def url(self) -> str:
        return resolve_url(self.base_url, self.archive)

    @property
    def folder_path(self) -> Path:
        return self.root / self.folder

    def _check_integrity(self) -> bool:
        """All files of the unpacked folder are present (their content is checked when read)."""
        return all((self.folder_path / f).is_file() for f in (*self.train_files, *self.test_files, self.meta_file))

    def download(self, download: bool = True, quiet: bool | None = None) -> None:
        """Make the unpacked folder complete: a no-op when it is, else unpack the archive
        (downloading it first when missing and `download` is allowed)."""
        if self._check_integrity():
            return
        path = self.root / self.archive
        if not download and not path.is_file():
            raise UserError(
                f"{self.name}: neither {self.folder_path}/ (complete) nor {path} found and downloading is off "
                f"(--no-download); download {self.url} and put it at {path}, or allow downloading"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        ensure_file(self.name, self.url, path, self.archive_md5, download=download, verify_existing=True, quiet=quiet)
        extract_tar(self.name, path, self.folder)
        if not self._check_integrity():
            raise UserError(f"{self.name}: {path} unpacked without all of {self.folder}/ (corrupt archive); delete it and run again")

    def load(self, download: bool = True, quiet: bool | None = None) -> RawData:
        self.download(download, quiet)
        x_train, y_train = self._read_split(self.train_files)
        x_test, y_test = self._read_split(self.test_files)
        return RawData(x_train, y_train, x_test, y_test, self._class_names()).validate(self.name, self.in_shape)

    # -- reading -------------------------------------------------------------------------------
    def _fix(self) -> str:
        return f"delete {self.folder_path} and run again to unpack it afresh from {self.archive}"

    def _read_file(self, fname: str) -> dict[str, Any]:
        path = self.folder_path / fname
        try:
            return _load_pickle(path)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as e:
            raise corrupt(self.name, path, e, self._fix()) from e

    def _read_split(self, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Concatenate batches: images uint8 (N, 3, 32, 32) and labels int64 (N,)."""
        xs, ys = [], []
        row = int(np.prod(self.in_shape))  # 3072 bytes per image, channel-major (R plane, G, B)
        for fname in files:
            d = self._read_file(fname)
            data, labels = d.get("data"), d.get(self.label_key)
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
                got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
                raise corrupt(self.name, self.folder_path / fname, f"'data' is {got}, expected uint8 (N, {row})", self._fix())
            if labels is None or len(labels) != len(data):
                raise corrupt(
                    self.name, self.folder_path / fname,
                    f"'{self.label_key}' missing or not one per image ({len(data)} images)", self._fix(),
                )
            xs.append(data.reshape(len(data), *self.in_shape))
            ys.append(np.asarray(labels, dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    def _class_names(self) -> tuple[str, ...]:
        names = self._read_file(self.meta_file).get(self.names_key)
        if not isinstance(names, (list, tuple)) or len(names) != self.num_classes:
            raise corrupt(
                self.name, self.folder_path / self.meta_file,
                f"'{self.names_key}' should list {self.num_classes} class names", self._fix(),
            )
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


class CIFAR100(CIFAR10):
    """CIFAR-100 with its 100 fine labels."""

    name = "cifar100"
    archive = "cifar-100-python.tar.gz"
    archive_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    meta_file = "meta"
    label_key = "fine_labels"
    names_key = "fine_label_names"
    num_classes = 100
