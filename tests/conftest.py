"""Shared test set-up: puts tests/ on sys.path (so tests can `import data_fakes`) and provides
fixtures for a tiny fake data set in the real on-disk format and for capturing saved figures."""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

# The fused GAAF op compiles its eager kernels on first use (10-30 s per spec and dtype on 2 cores).
# Tests run the plain math by default (same numbers up to rounding); test_activations_fused.py turns
# the compiled kernels on explicitly. Subprocesses started by tests inherit this.
os.environ.setdefault("GAAF_NO_COMPILE", "1")
# compiled kernels that tests save go to a folder of this test session, not the user's ~/.cache/gaaf
os.environ.setdefault("GAAF_CACHE_DIR", tempfile.mkdtemp(prefix="gaaf-test-cache-"))
# Inductor's own on-disk cache is not keyed on ATEN_CPU_CAPABILITY (torch 2.13): code built under one
# capability and loaded under another computes garbage or fails to build. The suite is run under each
# capability (tests/test_cpu_capabilities.py, and by hand), so each gets its own Inductor cache.
_capability = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() or "native"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"torchinductor-gaaf-tests-{os.getuid()}-{_capability}"))
# Where torch is installed the Keras tests compare gaaf.keras with the PyTorch op on torch tensors: Keras
# must load its torch backend, whatever the environment says (set before any test module can import
# keras). Without torch (CI's Keras-on-JAX environment, scripts/env-keras-jax.sh) the backend is the
# one KERAS_BACKEND names, and only the tests that need no torch run there.
if importlib.util.find_spec("torch") is not None:
    os.environ["KERAS_BACKEND"] = "torch"

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import figures_capture  # noqa: E402
from data_fakes import write_fake_cifar10  # noqa: E402


@pytest.fixture
def fake_cifar10_dir(tmp_path: Path) -> Path:
    """A data folder holding a tiny CIFAR-10 (50 train, 20 test images) in the official
    cifar-10-batches-py layout: pass it as `data_dir` / `--data-dir` with download off."""
    return write_fake_cifar10(tmp_path / "data", n_train=50, n_test=20, seed=0)


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> "figures_capture.SavedFigures":
    """Every matplotlib figure saved during the test, by the file it was written to (the PNGs are
    still written): ``saved_figures["acc_vs_shift.png"]`` is the Figure object (tests/figures_capture.py)."""
    return figures_capture.install(monkeypatch)
