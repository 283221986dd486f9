"""`load_dataset(name)`: a data set as float32 tensors on the device, normalized, in one call.

    splits = load_dataset("cifar10", device="cuda")
    splits.x_train   # (50000, 3, 32, 32) float32 on cuda
    splits.y_train   # (50000,) int64

Normalizations (statistics always from the training images actually used, i.e. after
`limit_train`, and applied to train and test alike):
- "pixel_mean" (the default, as in the GAAF seed code and Keras' ResNet example): x/255, then
  subtract the mean image (C, H, W) of the training images.
- "channel": x/255, then subtract the per-channel mean and divide by the per-channel standard
  deviation (population std over N, H, W) of the training images.
- "none": x/255 only.

`limit_train=N` / `limit_test=N` take the first N examples (all of them when N exceeds the
set). The official files are in a roughly random order, so a prefix is roughly class-balanced.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, choices_error
from .base import default_data_dir
from .cifar import CIFAR10, CIFAR100
from .mnist import MNIST
from .svhn import SVHN

_READERS = {"cifar10": CIFAR10, "cifar100": CIFAR100, "svhn": SVHN, "mnist": MNIST}
#: data sets `load_dataset` knows
DATASETS: tuple[str, ...] = tuple(_READERS)
#: values of `load_dataset(normalize=...)`
NORMALIZATIONS: tuple[str, ...] = ("pixel_mean", "channel", "none")


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a data set without reading it."""

    name: str
    in_shape: tuple[int, int, int]  # (C, H, W) of one image
    num_classes: int
    n_train: int  # images in the official training split
    n_test: int  # images in the official test split


def dataset_info(name: str) -> DatasetInfo:
    """Shape, class count and split sizes of `name` (one of DATASETS, any case); no file is read."""
    key = str(name).lower()
    if key not in _READERS:
        raise choices_error("dataset", name, DATASETS)
    r = _READERS[key]
    return DatasetInfo(key, tuple(r.in_shape), int(r.num_classes), int(r.n_train), int(r.n_test))


def prepare_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = True,
                    quiet: bool | None = None) -> Path:
    """Make `name`'s files present in `data_dir` (downloading them when missing and allowed) without
    reading them; return the data folder. Raises UserError saying what is missing and how to get it.
    `gaaf sweep` calls it once before any run starts, so a missing data set is one error, not one per run."""
    key = dataset_info(name).name
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    _READERS[key](root).download(download, quiet)
    return root


@dataclass
class Splits:
    """A loaded data set. Images (N, C, H, W) float32 and labels (N,) int64, on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    in_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    name: str
    normalize: str = "none"
    #: what was subtracted after /255: (C, H, W) for "pixel_mean", (C, 1, 1) for "channel", else None
    mean: torch.Tensor | None = None
    #: what was divided by: (C, 1, 1) for "channel", else None
    std: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)


def _check_limit(kind: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{kind} must be a positive whole number of examples or None (all), got {value!r}")
    return int(value)


def _to_device(x: np.ndarray, limit: int | None, device: torch.device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1] on `device`; the uint8 copy travels (4x smaller)."""
    x = np.ascontiguousarray(x[:limit])  # SVHN arrives as a transposed view: make NCHW contiguous
    if not x.flags.writeable:  # idx bytes parsed with np.frombuffer are read-only; torch wants writable
        x = x.copy()
    t = torch.from_numpy(x).to(device)
    return t.to(torch.float32).div_(255.0)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    normalize: str = "pixel_mean",
    device: str | torch.device = "cpu",
    limit_train: int | None = None,
    limit_test: int | None = None,
    quiet: bool | None = None,
) -> Splits:
    """Load `name` (one of DATASETS) from `data_dir` (default: `default_data_dir()`), downloading
    missing files unless `download=False`; see the module docstring for `normalize` and `limit_*`.
    `quiet=None` shows a download progress bar only on a terminal."""
    key = str(name).lower()
    if key not in _READERS:
        raise choices_error("dataset", name, DATASETS)
    if normalize not in NORMALIZATIONS:
        raise choices_error("normalization", normalize, NORMALIZATIONS)
    limit_train = _check_limit("limit_train", limit_train)
    limit_test = _check_limit("limit_test", limit_test)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"unknown device {device!r}; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():  # else torch fails late, with an AssertionError
        raise UserError(f"device {str(device)!r} asked for but CUDA is not available here; use device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {str(device)!r} asked for but MPS is not available here; use device='cpu'")

    reader = _READERS[key](Path(data_dir) if data_dir is not None else default_data_dir())
    raw = reader.load(download=download, quiet=quiet)
    x_train = _to_device(raw.x_train, limit_train, dev)
    x_test = _to_device(raw.x_test, limit_test, dev)
    y_train = torch.from_numpy(raw.y_train[:limit_train].copy()).to(dev)
    y_test = torch.from_numpy(raw.y_test[:limit_test].copy()).to(dev)
    if len(x_train) == 0:
        raise UserError(f"{key}: the training set in {reader.root} is empty; the files are corrupt")

    mean = std = None
    if normalize == "pixel_mean":
        mean = x_train.mean(dim=0)  # (C, H, W): the mean image
        x_train.sub_(mean)
        x_test.sub_(mean)
    elif normalize == "channel":
        # population variance over (N, H, W); var_mean is accurate (Welford), unlike E[x^2] - E[x]^2
        # in float32, and costs about a second for CIFAR on the CPU
        var, mean = torch.var_mean(x_train, dim=(0, 2, 3), correction=0, keepdim=True)  # (1, C, 1, 1)
        mean, std = mean[0], var[0].sqrt().clamp_min(1e-6)  # (C, 1, 1); clamp: a constant channel
        x_train.sub_(mean).div_(std)
        x_test.sub_(mean).div_(std)

    return Splits(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=len(raw.class_names), in_shape=tuple(reader.in_shape), class_names=raw.class_names,
        name=key, normalize=normalize, mean=mean, std=std,
    )
