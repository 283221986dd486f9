"""Reading each data set from its real on-disk format (tiny synthetic files), normalization,
limits, and every way a file can be missing or corrupt."""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import sys

import numpy as np
import pytest
import torch

from data_fakes import (CIFAR10_NAMES, fake_images, idx_bytes, write_fake_cifar10, write_fake_cifar100,
                        write_fake_mnist, write_fake_svhn)
from gaaf.data import DATASETS, NORMALIZATIONS, DatasetInfo, dataset_info, default_data_dir, load_dataset
from gaaf.errors import UserError


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- CIFAR ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar10_reads_exactly_what_was_written(tmp_path, str_keys):
    root = write_fake_cifar10(tmp_path, n_train=23, n_test=7, seed=3, str_keys=str_keys)
    s = load_dataset("cifar10", root, download=False, normalize="none")
    xtr, ytr = fake_images(23, (3, 32, 32), 10, 3)
    xte, yte = fake_images(7, (3, 32, 32), 10, 4)
    assert s.x_train.shape == (23, 3, 32, 32) and s.x_train.dtype == torch.float32
    assert s.y_train.dtype == torch.int64 and s.y_train.shape == (23,)
    assert torch.equal((s.x_train * 255).round().to(torch.uint8), torch.from_numpy(xtr))
    assert torch.equal((s.x_test * 255).round().to(torch.uint8), torch.from_numpy(xte))
    assert s.y_train.tolist() == ytr.tolist() and s.y_test.tolist() == yte.tolist()
    assert s.num_classes == 10 and s.in_shape == (3, 32, 32) and s.class_names == tuple(CIFAR10_NAMES)
    assert s.name == "cifar10" and s.n_train == 23 and s.n_test == 7


def test_cifar100_fine_labels(tmp_path):
    root = write_fake_cifar100(tmp_path, n_train=120, n_test=30, seed=1)
    s = load_dataset("CIFAR100", root, download=False, normalize="none")
    _, ytr = fake_images(120, (3, 32, 32), 100, 1)
    assert s.num_classes == 100 and s.class_names[7] == "class07" and s.name == "cifar100"
    assert s.y_train.tolist() == ytr.tolist() and int(s.y_train.max()) == 99
    assert s.x_test.shape == (30, 3, 32, 32)


def test_pixel_mean_uses_train_images_actually_used(tmp_path):
    root = write_fake_cifar10(tmp_path, n_train=40, n_test=10)
    raw = load_dataset("cifar10", root, download=False, normalize="none")
    s = load_dataset("cifar10", root, download=False, limit_train=15, limit_test=4)
    mean = raw.x_train[:15].mean(dim=0)  # (C, H, W) mean image of the first 15
    assert s.n_train == 15 and s.n_test == 4 and s.normalize == "pixel_mean"
    torch.testing.assert_close(s.mean, mean)
    torch.testing.assert_close(s.x_train, raw.x_train[:15] - mean)
    torch.testing.assert_close(s.x_test, raw.x_test[:4] - mean)  # test shifted by the TRAIN mean
    assert s.y_train.tolist() == raw.y_train[:15].tolist()


def test_channel_normalization(tmp_path):
    root = write_fake_cifar10(tmp_path, n_train=30, n_test=10)
    raw = load_dataset("cifar10", root, download=False, normalize="none")
    s = load_dataset("cifar10", root, download=False, normalize="channel")
    assert s.mean.shape == (3, 1, 1) and s.std.shape == (3, 1, 1)
    torch.testing.assert_close(s.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.x_train.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.x_test, (raw.x_test - s.mean) / s.std)


def test_limits_larger_than_the_set_take_everything(tmp_path):
    root = write_fake_cifar10(tmp_path, n_train=10, n_test=5)
    s = load_dataset("cifar10", root, download=False, limit_train=1000, limit_test=1000)
    assert s.n_train == 10 and s.n_test == 5


def test_incomplete_cifar_folder_without_archive_names_the_fix(tmp_path):
    root = write_fake_cifar10(tmp_path)
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root, download=False)
    msg = _one_line(e)
    assert "cifar-10-python.tar.gz" in msg and str(root / "cifar-10-python.tar.gz") in msg and "--no-download" in msg


def _rewrite_batch(root, fname, mutate):
    path = root / "cifar-10-batches-py" / fname
    with open(path, "rb") as f:
        d = pickle.load(f)
    with open(path, "wb") as f:
        pickle.dump(mutate(d), f)


@pytest.mark.parametrize("damage, needle", [
    (lambda root: (root / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x04\x95garbage"), "data_batch_2"),
    (lambda root: _rewrite_batch(root, "data_batch_1", lambda d: {**d, b"data": d[b"data"][:, :100]}), "uint8 (N, 3072)"),
    (lambda root: _rewrite_batch(root, "test_batch", lambda d: {b"data": d[b"data"]}), "'labels' missing"),
    (lambda root: _rewrite_batch(root, "test_batch", lambda d: {**d, b"labels": [42] * len(d[b"labels"])}), "labels span"),
    (lambda root: _rewrite_batch(root, "batches.meta", lambda d: {b"label_names": [b"a", b"b"]}), "10 class names"),
])
def test_corrupt_cifar_files_are_reported(tmp_path, damage, needle):
    root = write_fake_cifar10(tmp_path)
    damage(root)
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root, download=False)
    assert needle in _one_line(e)


def test_truncated_pickle_is_reported(tmp_path):
    root = write_fake_cifar10(tmp_path)
    path = root / "cifar-10-batches-py" / "data_batch_4"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root, download=False)
    msg = _one_line(e)
    assert str(path) in msg and "delete" in msg


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    root = write_fake_cifar10(tmp_path)
    _rewrite_batch(root, "data_batch_1", lambda d: {**d, b"evil": _Evil()})
    with pytest.raises(UserError, match="not allowed"):
        load_dataset("cifar10", root, download=False)


# -- SVHN ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("subdir", ["svhn", ""])  # our layout and torchvision's (files in the root)
def test_svhn_layout_and_label_10_is_zero(tmp_path, subdir):
    pytest.importorskip("scipy")
    root = write_fake_svhn(tmp_path, n_train=30, n_test=12, seed=5, subdir=subdir)
    s = load_dataset("svhn", root, download=False, normalize="none")
    xtr, ytr = fake_images(30, (3, 32, 32), 10, 5)
    assert s.x_train.shape == (30, 3, 32, 32) and s.x_train.is_contiguous()
    assert torch.equal((s.x_train * 255).round().to(torch.uint8), torch.from_numpy(xtr))
    assert s.y_train.tolist() == ytr.tolist() and 0 in s.y_train.tolist()
    assert s.n_test == 12 and s.class_names[0] == "0" and s.num_classes == 10


def test_svhn_corrupt_and_wrong_shapes(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    root = write_fake_svhn(tmp_path)
    train = root / "svhn" / "train_32x32.mat"
    train.write_bytes(train.read_bytes()[:500])
    with pytest.raises(UserError) as e:
        load_dataset("svhn", root, download=False)
    assert str(train) in _one_line(e)
    scipy_io.savemat(train, {"X": np.zeros((28, 28, 1, 4), np.uint8), "y": np.ones((4, 1), np.uint8)})
    with pytest.raises(UserError, match=r"expected uint8 \(32, 32, 3, N\)"):
        load_dataset("svhn", root, download=False)
    scipy_io.savemat(train, {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.full((4, 1), 11, np.uint8)})
    with pytest.raises(UserError, match="1..10"):
        load_dataset("svhn", root, download=False)


def test_svhn_without_scipy_says_install_it(tmp_path, monkeypatch):
    (tmp_path / "svhn").mkdir()
    for f in ("train_32x32.mat", "test_32x32.mat"):
        (tmp_path / "svhn" / f).write_bytes(b"MATLAB")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `import scipy.io` raise ImportError
    with pytest.raises(UserError, match="needs scipy"):
        load_dataset("svhn", tmp_path, download=False)


# -- MNIST ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz, subdir", [(True, "mnist"), (False, "mnist"), (False, "MNIST/raw"), (True, "MNIST/raw")])
def test_mnist_idx_files(tmp_path, gz, subdir):
    root = write_fake_mnist(tmp_path, n_train=40, n_test=20, seed=2, gz=gz, subdir=subdir)
    s = load_dataset("mnist", root, download=False, normalize="none")
    xtr, ytr = fake_images(40, (28, 28), 10, 2)
    assert s.in_shape == (1, 28, 28) and s.x_train.shape == (40, 1, 28, 28) and s.x_test.shape == (20, 1, 28, 28)
    assert torch.equal((s.x_train[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(xtr))
    assert s.y_train.tolist() == ytr.tolist()


@pytest.mark.parametrize("content, needle", [
    (gzip.compress(b"\x00\x00\x09\x03" + b"\x00" * 40), "not an unsigned-byte idx"),
    (gzip.compress(idx_bytes(np.zeros((40, 28, 28), np.uint8))[:-5]), "need 31360 bytes"),
    (gzip.compress(idx_bytes(np.zeros((40, 28, 28), np.uint8)))[:-30], "train-images-idx3-ubyte.gz"),  # truncated gz
    (idx_bytes(np.zeros((40, 28, 28), np.uint8)), "train-images-idx3-ubyte.gz"),  # not gzipped at all
    (gzip.compress(idx_bytes(np.zeros((40, 784), np.uint8))), "2 dimensions, expected 3"),
])
def test_corrupt_mnist_is_reported(tmp_path, content, needle):
    root = write_fake_mnist(tmp_path)
    (root / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(content)
    with pytest.raises(UserError) as e:
        load_dataset("mnist", root, download=False)
    assert needle in _one_line(e)


def test_mnist_image_label_count_mismatch(tmp_path):
    root = write_fake_mnist(tmp_path, n_train=40)
    (root / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(39, np.uint8))))
    with pytest.raises(UserError, match="40 train images but labels of shape"):
        load_dataset("mnist", root, download=False)


# -- arguments and missing data ------------------------------------------------------------------
def test_unknown_names_list_the_choices(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("imagenet", tmp_path)
    assert all(d in str(e.value) for d in DATASETS)
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", tmp_path, normalize="zca")
    assert all(n in str(e.value) for n in NORMALIZATIONS)


def test_dataset_info_reads_no_file():
    assert dataset_info("CIFAR10") == DatasetInfo("cifar10", (3, 32, 32), 10, 50_000, 10_000)
    assert dataset_info("cifar100").num_classes == 100 and dataset_info("mnist").in_shape == (1, 28, 28)
    assert (dataset_info("svhn").n_train, dataset_info("svhn").n_test) == (73_257, 26_032)
    assert (dataset_info("mnist").n_train, dataset_info("mnist").n_test) == (60_000, 10_000)
    with pytest.raises(UserError) as e:
        dataset_info("imagenet")
    assert all(d in _one_line(e) for d in DATASETS)


@pytest.mark.parametrize("kw", [{"limit_train": 0}, {"limit_test": -3}, {"limit_train": 2.5}, {"limit_train": True},
                                {"device": "gpu0"}])
def test_bad_arguments(fake_cifar10_dir, kw):
    with pytest.raises(UserError):
        load_dataset("cifar10", fake_cifar10_dir, download=False, **kw)


@pytest.mark.parametrize("name, fname", [("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz"),
                                         ("svhn", "train_32x32.mat"), ("mnist", "train-images-idx3-ubyte.gz")])
def test_missing_data_without_download_names_url_and_path(tmp_path, monkeypatch, name, fname):
    monkeypatch.delenv("GAAF_DATA_MIRROR", raising=False)
    with pytest.raises(UserError) as e:
        load_dataset(name, tmp_path, download=False)
    msg = _one_line(e)
    assert f"/{fname}" in msg and "http" in msg and str(tmp_path) in msg
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing half-written


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_user_error(fake_cifar10_dir):
    with pytest.raises(UserError, match="CUDA is not available"):
        load_dataset("cifar10", fake_cifar10_dir, download=False, device="cuda")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GAAF_DATA_DIR", str(tmp_path / "x"))
    assert default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("GAAF_DATA_DIR")
    assert default_data_dir() == __import__("pathlib").Path.home() / ".cache" / "gaaf"


def test_default_data_dir_is_used(monkeypatch, fake_cifar10_dir):
    monkeypatch.setenv("GAAF_DATA_DIR", str(fake_cifar10_dir))
    assert load_dataset("cifar10", download=False).n_train == 50


def test_fixture_copy_is_independent(fake_cifar10_dir, tmp_path):
    # the fixture writes a full official layout that can be copied elsewhere (as CLI tests do)
    dst = tmp_path / "copy"
    shutil.copytree(fake_cifar10_dir, dst)
    assert load_dataset("cifar10", dst, download=False, normalize="none").n_test == 20
