"""SVHN (Netzer et al. 2011), cropped digits, from the official MATLAB files.

    DIR/svhn/train_32x32.mat   X uint8 (32, 32, 3, 73257), y (73257, 1) with labels 1..10
    DIR/svhn/test_32x32.mat    X uint8 (32, 32, 3, 26032), y (26032, 1)

Label 10 means the digit 0 and is mapped to 0. Files directly in DIR (torchvision's layout) are
used too. A download is md5-checked; a file already present is validated by structure (keys,
shapes, label range). Reading needs scipy (imported only here, only when SVHN is loaded).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import RawData, corrupt, resolve_url
from .download import ensure_file


class SVHN:
    name = "svhn"
    base_url = "http://ufldl.stanford.edu/housenumbers/"
    subdir = "svhn"
    #: split -> (file name, md5 of the official file)
    files = {
        "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    }
    num_classes = 10
    in_shape = (3, 32, 32)
    n_train, n_test = 73_257, 26_032  # images in train_32x32.mat / test_32x32.mat
    class_names = tuple(str(d) for d in range(10))

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def _candidates(self, fname: str) -> list[Path]:
        return [self.root / self.subdir / fname, self.root / fname]

    def _locate(self, split: str, download: bool, quiet: bool | None) -> Path:
        fname, md5 = self.files[split]
        for p in self._candidates(fname):
            if p.is_file():
                return p
        target = self._candidates(fname)[0]
        url = resolve_url(self.base_url, fname)
        return ensure_file(self.name, url, target, md5, download=download, verify_existing=False, quiet=quiet)

    def download(self, download: bool = True, quiet: bool | None = None) -> None:
        """Fetch whichever .mat files are missing (idempotent)."""
        for split in self.files:
            self._locate(split, download, quiet)

    def load(self, download: bool = True, quiet: bool | None = None) -> RawData:
        paths = {split: self._locate(split, download, quiet) for split in self.files}
        x_train, y_train = self._read(paths["train"])
        x_test, y_test = self._read(paths["test"])
        return RawData(x_train, y_train, x_test, y_test, self.class_names).validate(self.name, self.in_shape)

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Images uint8 (N, 3, 32, 32) (a transposed view) and labels int64 (N,) in 0..9."""
        try:
            import scipy.io
        except ImportError as e:
            raise UserError(f"{self.name}: reading {path.name} needs scipy; install it (pip install scipy)") from e
        fix = f"delete {path} and run again to download it afresh"
        try:
            mat = scipy.io.loadmat(path)
        except Exception as e:  # scipy raises many kinds (MatReadError, ValueError, zlib.error, ...)
            raise corrupt(self.name, path, e, fix) from e
        x, y = mat.get("X"), mat.get("y")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else "missing"
            raise corrupt(self.name, path, f"'X' is {got}, expected uint8 (32, 32, 3, N)", fix)
        n = x.shape[3]
        if not isinstance(y, np.ndarray) or y.size != n:
            raise corrupt(self.name, path, f"'y' should hold one label per image ({n})", fix)
        y = y.reshape(-1).astype(np.int64)
        if n and (y.min() < 0 or y.max() > 10):
            raise corrupt(self.name, path, f"labels span [{y.min()}, {y.max()}], expected 1..10", fix)
        # (H, W, C, N) -> (N, C, H, W); label 10 is the digit 0
        return x.transpose(3, 2, 0, 1), y % 10
