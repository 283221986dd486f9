"""MNIST (LeCun et al. 1998) from the idx files, parsed here with numpy.

    DIR/mnist/train-images-idx3-ubyte.gz   idx: magic 0x00000803, dims (60000, 28, 28), uint8
    DIR/mnist/train-labels-idx1-ubyte.gz   idx: magic 0x00000801, dims (60000,), uint8
    DIR/mnist/t10k-images-idx3-ubyte.gz    (10000, 28, 28)
    DIR/mnist/t10k-labels-idx1-ubyte.gz    (10000,)

Downloads come from the PyTorch mirror (yann.lecun.com no longer serves them reliably) and are
md5-checked. Files already present — gzipped or not, in DIR/mnist/ or torchvision's
DIR/MNIST/raw/ — are validated by structure.

idx format: 2 zero bytes, a type byte (0x08 = uint8), a byte with the number of dimensions d,
then d big-endian int32 sizes, then the data in C order.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .base import RawData, corrupt, resolve_url
from .download import ensure_file


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped when the name ends in .gz) as a uint8 array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"not an unsigned-byte idx file (header {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError("idx header truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise ValueError(f"dims {dims} need {expected} bytes of data, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class MNIST:
    name = "mnist"
    base_url = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    subdir = "mnist"
    #: (images, labels) file names and md5s per split
    files = {
        "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                  ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
        "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                 ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
    }
    num_classes = 10
    in_shape = (1, 28, 28)
    n_train, n_test = 60_000, 10_000  # images in the official splits
    class_names = tuple(str(d) for d in range(10))

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def _candidates(self, fname: str) -> list[Path]:
        plain = fname[: -len(".gz")]
        return [self.root / self.subdir / fname, self.root / self.subdir / plain,
                self.root / "MNIST" / "raw" / fname, self.root / "MNIST" / "raw" / plain]

    def _locate(self, fname: str, md5: str, download: bool, quiet: bool | None) -> Path:
        for p in self._candidates(fname):
            if p.is_file():
                return p
        url = resolve_url(self.base_url, fname)
        return ensure_file(self.name, url, self._candidates(fname)[0], md5, download=download,
                           verify_existing=False, quiet=quiet)

    def download(self, download: bool = True, quiet: bool | None = None) -> None:
        """Fetch whichever of the four files are missing (idempotent)."""
        for pair in self.files.values():
            for fname, md5 in pair:
                self._locate(fname, md5, download, quiet)

    def load(self, download: bool = True, quiet: bool | None = None) -> RawData:
        out = []
        for pair in self.files.values():
            (img_name, img_md5), (lab_name, lab_md5) = pair
            x = self._read(self._locate(img_name, img_md5, download, quiet), ndim=3)
            y = self._read(self._locate(lab_name, lab_md5, download, quiet), ndim=1)
            out += [x[:, None], y.astype(np.int64)]  # (N, 28, 28) -> (N, 1, 28, 28)
        return RawData(*out, class_names=self.class_names).validate(self.name, self.in_shape)

    def _read(self, path: Path, ndim: int) -> np.ndarray:
        fix = f"delete {path} and run again to download it afresh"
        try:
            arr = read_idx(path)
        except (OSError, EOFError, zlib.error, ValueError) as e:
            raise corrupt(self.name, path, e, fix) from e
        if arr.ndim != ndim:
            raise corrupt(self.name, path, f"{arr.ndim} dimensions, expected {ndim}", fix)
        return arr
