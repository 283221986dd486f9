"""Tiny synthetic data sets in each data set's REAL on-disk format, for tests.

    from data_fakes import write_fake_cifar10
    root = write_fake_cifar10(tmp_path / "data", n_train=50, n_test=20, seed=0)
    splits = gaaf.data.load_dataset("cifar10", root, download=False)

Each writer returns the data folder (pass it as `data_dir`) and writes exactly the layout the
loader reads; `fake_images` gives back the arrays written, for comparisons.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_images(n: int, shape: tuple[int, ...], num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (n, *shape) and labels (n,) int64 covering the classes in random order."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    return x, y


def _dump(path: Path, obj: object, protocol: int = 4) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_fake_cifar10(root: str | Path, n_train: int = 50, n_test: int = 20, seed: int = 0,
                       str_keys: bool = False) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; train split across the
    5 batches. Keys are bytes (as a Python 3 rewrite writes them) or str (`str_keys`, as the
    official Python 2 pickles load with latin1). Returns root."""
    root = Path(root)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    k = (lambda s: s) if str_keys else (lambda s: s.encode())
    xtr, ytr = fake_images(n_train, (3, 32, 32), 10, seed)
    xte, yte = fake_images(n_test, (3, 32, 32), 10, seed + 1)
    bounds = np.linspace(0, n_train, 6).astype(int)
    for b in range(5):
        s = slice(bounds[b], bounds[b + 1])
        _dump(d / f"data_batch_{b + 1}", {k("batch_label"): k(f"training batch {b + 1} of 5"),
                                          k("labels"): [int(v) for v in ytr[s]],
                                          k("data"): xtr[s].reshape(-1, 3072)})
    _dump(d / "test_batch", {k("batch_label"): k("testing batch 1 of 1"), k("labels"): [int(v) for v in yte],
                             k("data"): xte.reshape(-1, 3072)})
    _dump(d / "batches.meta", {k("label_names"): [k(n) for n in CIFAR10_NAMES], k("num_vis"): 3072})
    return root


def write_fake_cifar100(root: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """root/cifar-100-python/{train,test,meta} with fine and coarse labels. Returns root."""
    root = Path(root)
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for fname, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = fake_images(n, (3, 32, 32), 100, s)
        _dump(d / fname, {b"data": x.reshape(n, -1), b"fine_labels": [int(v) for v in y],
                          b"coarse_labels": [int(v) // 5 for v in y]})
    _dump(d / "meta", {b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
                       b"coarse_label_names": [f"super{i:02d}".encode() for i in range(20)]})
    return root


def write_fake_svhn(root: str | Path, n_train: int = 30, n_test: int = 20, seed: int = 0, subdir: str = "svhn") -> Path:
    """root/<subdir>/{train,test}_32x32.mat: X uint8 (32, 32, 3, N), y (N, 1) in 1..10 (10 = digit 0),
    written with scipy.io.savemat. Returns root."""
    import scipy.io

    root = Path(root)
    d = root / subdir if subdir else root
    d.mkdir(parents=True, exist_ok=True)
    for fname, n, s in (("train_32x32.mat", n_train, seed), ("test_32x32.mat", n_test, seed + 1)):
        x, y = fake_images(n, (3, 32, 32), 10, s)  # (N, C, H, W), digits 0..9
        y_mat = np.where(y == 0, 10, y).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(d / fname, {"X": x.transpose(2, 3, 1, 0), "y": y_mat})  # -> (H, W, C, N)
    return root


def idx_bytes(arr: np.ndarray) -> bytes:
    """An uint8 array in idx format: 0, 0, 0x08, ndim, big-endian int32 dims, data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes() + arr.tobytes()


def write_fake_mnist(root: str | Path, n_train: int = 40, n_test: int = 20, seed: int = 0, gz: bool = True,
                     subdir: str = "mnist") -> Path:
    """root/<subdir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. Returns root."""
    root = Path(root)
    d = root / subdir
    d.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = fake_images(n, (28, 28), 10, s)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y.astype(np.uint8))):
            name = f"{prefix}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (d / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (d / name).write_bytes(data)
    return root


def make_tar_gz(src_root: str | Path, folder: str, archive: str | Path) -> str:
    """Pack src_root/folder into `archive` (members named folder/...) and return its md5."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(Path(src_root) / folder, arcname=folder)
    return hashlib.md5(Path(archive).read_bytes()).hexdigest()
