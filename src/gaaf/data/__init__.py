"""Data sets as tensors on the device, a device-side loader, and batched augmentation.

    from gaaf.data import load_dataset, DeviceLoader, make_augment
    s = load_dataset("cifar10", device="cuda")                      # Splits; downloads once to ~/.cache/gaaf
    g = torch.Generator().manual_seed(0)
    for xb, yb in DeviceLoader(s.x_train, s.y_train, 128, augment=make_augment(["shift"]), generator=g):
        ...

Files live in `default_data_dir()` ($GAAF_DATA_DIR or ~/.cache/gaaf); GAAF_DATA_MIRROR replaces the
download base URL. See datasets.py (normalization), loader.py (sharding), augment.py.
"""
from ..errors import require_torch

require_torch(__name__)  # before anything imports torch: one line that names the fix

from .augment import AUGMENTATIONS, Compose, make_augment, random_crop, random_flip, random_shift
from .base import DATA_DIR_ENV, MIRROR_ENV, RawData, default_data_dir
from .cifar import CIFAR10, CIFAR100
from .datasets import DATASETS, NORMALIZATIONS, DatasetInfo, Splits, dataset_info, load_dataset, prepare_dataset
from .download import md5sum
from .loader import DeviceLoader
from .mnist import MNIST, read_idx
from .svhn import SVHN

__all__ = [
    "AUGMENTATIONS", "CIFAR10", "CIFAR100", "Compose", "DATASETS", "DATA_DIR_ENV", "DatasetInfo", "DeviceLoader",
    "MIRROR_ENV", "MNIST", "NORMALIZATIONS", "RawData", "SVHN", "Splits", "dataset_info", "default_data_dir",
    "load_dataset", "prepare_dataset", "make_augment", "md5sum", "random_crop", "random_flip", "random_shift", "read_idx",
]
