"""gaaf.train.allocator: glibc's malloc keeps freed memory for gaaf train and the training benchmarks."""
from __future__ import annotations

import ctypes.util
import platform
import subprocess
import sys

import pytest

from gaaf.train import allocator


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)


def test_off_switch(monkeypatch):
    monkeypatch.setenv("GAAF_KEEP_MEMORY", "0")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv("GAAF_KEEP_MEMORY")
    assert allocator.keep_freed_memory() is False  # the first call decides, once per process


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_takes_effect_on_glibc(monkeypatch):
    monkeypatch.delenv("GAAF_KEEP_MEMORY", raising=False)
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True


def test_gaaf_train_sets_it(fake_cifar10_dir, tmp_path, monkeypatch):
    """The CLI calls it before training (checked through the module's recorded outcome)."""
    code = (
        "import sys; from gaaf.train import allocator; from gaaf.cli import main\n"
        f"rc = main(['train', '--model', 'mlp', '--dataset', 'cifar10', '--data-dir', {str(fake_cifar10_dir)!r},"
        f" '--no-download', '--epochs', '1', '--quiet', '--out', {str(tmp_path / 'run')!r}])\n"
        "print('DONE', rc, allocator._done is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "DONE 0 True" in out.stdout, out.stdout + out.stderr
