"""What every data-set reader shares: the data folder, the raw arrays it returns, and the
one-line errors that name the fix.

A reader (cifar.py, svhn.py, mnist.py) turns files on disk into a `RawData` of uint8 images in
(N, C, H, W) layout and int64 labels; `gaaf.data.datasets.load_dataset` does the rest
(limit, normalize, move to the device).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

#: environment variable naming the data folder (default ~/.cache/gaaf)
DATA_DIR_ENV = "GAAF_DATA_DIR"
#: environment variable naming a mirror: a base URL that replaces every official base URL
MIRROR_ENV = "GAAF_DATA_MIRROR"


def default_data_dir() -> Path:
    """`$GAAF_DATA_DIR` if set (and not empty), else `~/.cache/gaaf`."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gaaf"


def resolve_url(base_url: str, filename: str) -> str:
    """The URL to fetch `filename` from: `$GAAF_DATA_MIRROR/filename` if the mirror is set,
    else `base_url/filename`. One flat mirror folder serves every data set (file names differ)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    base = mirror or base_url
    return base.rstrip("/") + "/" + filename


@dataclass
class RawData:
    """Images as stored: uint8 (N, C, H, W), labels int64 (N,) in [0, num_classes)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    def validate(self, name: str, in_shape: tuple[int, int, int]) -> "RawData":
        """Check dtypes, shapes and label ranges; a mismatch means a corrupt or foreign file."""
        k = len(self.class_names)
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != in_shape:
                raise UserError(
                    f"{name}: {split} images have dtype {x.dtype} and shape {tuple(x.shape)}, "
                    f"expected uint8 (N, {', '.join(map(str, in_shape))}); the files are corrupt or not {name}"
                )
            if y.shape != (len(x),):
                raise UserError(f"{name}: {len(x)} {split} images but labels of shape {tuple(y.shape)}; the files are corrupt")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
                raise UserError(
                    f"{name}: {split} labels span [{int(y.min())}, {int(y.max())}], expected [0, {k - 1}]; the files are corrupt"
                )
        return self


def corrupt(name: str, path: Path, why: object, fix: str) -> UserError:
    """`cifar10: cannot read PATH (why); FIX` — one line, whatever `why` contains."""
    reason = " ".join(str(why).split()) or type(why).__name__
    return UserError(f"{name}: cannot read {path} ({reason}); {fix}")
