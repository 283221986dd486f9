"""examples/keras_resnet20.py, the Keras 3 training example: the seed's ResNet20 v1 and recipe, the
CIFAR-10 pickles, one-line errors, and a short run in a subprocess. Needs no torch: CI runs it on the
torch backend and on JAX without torch (scripts/env-keras-jax.sh)."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_fakes import fake_images, write_fake_cifar10

keras = pytest.importorskip("keras")
import gaaf.keras as gk  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "keras_resnet20.py"
_spec = importlib.util.spec_from_file_location("keras_resnet20", EXAMPLE)
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_resnet20_is_the_keras_examples() -> None:
    """273,066 trainable parameters (Keras's model.summary() of the example's resnet_v1, depth 20), a
    fresh GAAF layer at each of the 19 sites, or 18 behind a relu stem (the seed's)."""
    model = example.resnet_v1(20, lambda: gk.get_activation("gaaf_relu", shift=-1.0), lambda: gk.get_activation("relu"))
    gaaf_layers = [layer for layer in model.layers if isinstance(layer, gk.GAAF)]
    assert _trainable(model) == 273_066 and model.output_shape == (None, 10)
    assert len(gaaf_layers) == 18 and len({id(layer) for layer in gaaf_layers}) == 18
    assert all(layer.spec.shape_params["shift"] == -1.0 for layer in gaaf_layers)
    assert isinstance(model.layers[3], keras.layers.ReLU)  # input, conv, BN, the stem's activation
    regularized = [layer for layer in model.layers if getattr(layer, "kernel_regularizer", None) is not None]
    assert len(regularized) == 21 and all(isinstance(layer, keras.layers.Conv2D) for layer in regularized)
    everywhere = example.resnet_v1(20, lambda: gk.get_activation("gaaf_tanh"), lambda: gk.get_activation("gaaf_tanh"))
    assert sum(isinstance(layer, gk.GAAF) for layer in everywhere.layers) == 19


def test_lr_schedule_is_the_seeds() -> None:
    """lr × 0.1 / 0.01 / 0.001 / 0.0005 once the 0-based epoch exceeds 80 / 120 / 160 / 180 (gaaf
    train's seed preset: from 1-based epochs 82 / 122 / 162 / 182)."""
    got = {e: example.lr_schedule(e) for e in (0, 80, 81, 120, 121, 160, 161, 180, 181, 199)}
    want = {0: 1e-3, 80: 1e-3, 81: 1e-4, 120: 1e-4, 121: 1e-5, 160: 1e-5, 161: 1e-6, 180: 1e-6, 181: 5e-7, 199: 5e-7}
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("str_keys", [False, True])
def test_reads_the_pickles_and_subtracts_the_pixel_mean(tmp_path: Path, str_keys: bool) -> None:
    root = write_fake_cifar10(tmp_path, n_train=50, n_test=20, seed=3, str_keys=str_keys)
    x_train, y_train, x_test, y_test = example.load_data(root, 40, None)
    raw_train, labels_train = fake_images(50, (3, 32, 32), 10, 3)
    raw_test, labels_test = fake_images(20, (3, 32, 32), 10, 4)
    assert x_train.shape == (40, 32, 32, 3) and x_test.shape == (20, 32, 32, 3) and x_train.dtype == np.float32
    np.testing.assert_array_equal(y_train, labels_train[:40])
    np.testing.assert_array_equal(y_test, labels_test)
    mean = raw_train[:40].transpose(0, 2, 3, 1).astype(np.float32).mean(axis=0) / 255  # over the images used
    np.testing.assert_allclose(x_train + mean, raw_train[:40].transpose(0, 2, 3, 1) / 255, atol=1e-6)
    np.testing.assert_allclose(x_test + mean, raw_test.transpose(0, 2, 3, 1) / 255, atol=1e-6)
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-6)
    # the folder holding the batches works as well as its parent
    np.testing.assert_array_equal(example.load_data(root / "cifar-10-batches-py", 40, None)[1], y_train)


@pytest.mark.parametrize("argv, message", [
    (["--depth", "9"], "--depth 9: must be 6n+2 with n >= 1"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--data-dir", "/nonexistent/gaaf"], "--data-dir /nonexistent/gaaf: no such folder"),
    (["--activation", "swish"], "unknown activation 'swish'; choose one of:"),
    (["--activation", "relu", "--shift", "-1"], "'relu' takes no parameters, got shift (did you mean 'gaaf_relu'?)"),
    (["--data-dir", "EMPTY"], "lacks data_batch_1, data_batch_2"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    argv = [str(tmp_path) if a == "EMPTY" else a for a in argv]
    try:
        rc = example.main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_a_short_run_trains(tmp_path: Path) -> None:
    """One epoch of ResNet8 on 32 fake images, as a user runs it (the backend: KERAS_BACKEND)."""
    root = write_fake_cifar10(tmp_path, n_train=32, n_test=16)  # batches of 16: one shape to compile
    cmd = [sys.executable, str(EXAMPLE), "--data-dir", str(root), "--epochs", "1", "--batch-size", "16",
           "--depth", "8", "--activation", "gaaf_relu", "--shift", "-1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0] == (f"resnet8_v1 on {keras.backend.backend()}: 78,186 trainable parameters, 7 GAAF layers "
                        "(gaaf_relu {'shift': -1.0}, stem gaaf_relu); 32 training, 16 test images"), run.stdout
    assert re.search(r"^2/2 - .*loss: \d+\.\d+ .*val_accuracy: ", run.stdout, re.M), run.stdout
    final = re.fullmatch(r"test accuracy: final (\d\.\d{4}), best (\d\.\d{4}) \(epoch 1 of 1\)", lines[-1])
    assert final and final.group(1) == final.group(2), lines[-1]
