"""`gaaf bench keras`: the Keras example's ResNet v1 (the seed's stack) against gaaf train's defaults.
Structure and output format only, on a tiny model (no timing thresholds)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")  # tests/conftest.py selects its torch backend

from gaaf.bench.keras_worker import keras_resnet_v1  # noqa: E402
from gaaf.cli import main  # noqa: E402


@pytest.fixture(autouse=True)
def _no_kernel_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAAF_NO_COMPILE", "1")  # gaaf's default "auto" compile then resolves eager: fast


def test_keras_resnet_v1_is_the_keras_example_layout() -> None:
    """ResNet20 v1 as Keras' model.summary() counts it (273,066 trainable, as gaaf.models' port), with
    a GAAF layer at every activation site and 1×1 projection shortcuts without BN."""
    from gaaf import keras as gaaf_keras

    model = keras_resnet_v1(keras, 20, "gaaf_relu")
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert trainable == 273_066
    gaaf_layers = [layer for layer in model.layers if isinstance(layer, gaaf_keras.GAAF)]
    assert len(gaaf_layers) == 19 and all(layer.spec.shape_params["shift"] == -1.0 for layer in gaaf_layers)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sum(c.kernel_size == (1, 1) for c in convs) == 2 and len(convs) == 21
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-3)


def test_bench_keras_prints_both_stacks_and_the_ratio(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "keras.json"
    rc = main(["bench", "keras", "--model", "resnet8_v1", "--batch-size", "4", "--rounds", "1", "--steps", "1",
               "--warmup", "0", "--activations", "relu,gaaf_relu", "--threads", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Keras 3" in text and "torch backend" in text and "compile off" in text and "machine:" in text
    header = next(line for line in text.splitlines() if line.startswith("activation"))
    assert "keras img/s" in header and "gaaf img/s" in header and "gaaf/keras" in header
    rows = [line.split() for line in text.splitlines() if line.startswith(("relu ", "gaaf_relu "))]
    assert [r[0] for r in rows] == ["relu", "gaaf_relu"] and all(float(r[1]) > 0 and float(r[3]) > 0 for r in rows)
    data = json.loads(out.read_text())
    assert set(data["timings"]) == {"keras/relu", "gaaf/relu", "keras/gaaf_relu", "gaaf/gaaf_relu"}
    assert data["environment"]["keras_backend"] == "torch" and data["settings"]["gaaf"]["compile"] is False
    assert all(r["gaaf_over_keras"] > 0 for r in data["ratios"].values())
    # the bound: gaaf's convolutions (profiled) + the activation kernels, per activation
    bounds = [line for line in text.splitlines() if line.startswith("bound ")]
    assert [line.split()[1] for line in bounds] == ["relu:", "gaaf_relu:"]
    assert set(data["bounds"]) == {"relu", "gaaf_relu"}
    for act, b in data["bounds"].items():
        assert b["conv_s"] > 0 and b["act_s"] > 0 and b["images"] == 4
        assert b["images_per_second"] == pytest.approx(4 / (b["conv_s"] + b["act_s"]))
        assert b["gaaf_over_keras"] == pytest.approx(b["images_per_second"] / data["timings"][f"keras/{act}"]["images_per_second"])


def test_step_bound_counts_only_convolutions() -> None:
    """conv_seconds sums the profiled self time of convolution ops alone: a step without a
    convolution has none, a step with one has some; StepBound's img/s is images ÷ (conv + act)."""
    import torch

    from gaaf.bench.step_bound import StepBound, conv_seconds

    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    assert conv_seconds(lambda: torch.relu(x), 2, torch.device("cpu")) == 0.0
    assert conv_seconds(lambda: torch.nn.functional.conv2d(x, w), 2, torch.device("cpu")) > 0.0
    assert StepBound(128, 0.2, 0.056).images_per_second == pytest.approx(500.0)
    with pytest.raises(ValueError, match="at least one"):
        conv_seconds(lambda: None, 0, torch.device("cpu"))


@pytest.mark.parametrize("argv", [["--model", "resnet20_v2"], ["--model", "resnet9_v1"], ["--activations", "tanh"],
                                  ["--steps", "0"], ["--backend", "nope"]])
def test_bench_keras_rejects_bad_input(argv: list) -> None:
    assert main(["bench", "keras", "--rounds", "1", *argv]) == 2


def test_keras_worker_runs_the_model_in_its_own_process_and_reports_errors() -> None:
    """The Keras stack steps in a worker process (KerasWorker): each call runs the requested steps
    there; a UserError raised in the worker (here: a depth that is not 6n+2) comes back as is, and a
    stopped worker has exited."""
    import os

    import numpy as np

    from gaaf.bench.keras_worker import KerasWorker
    from gaaf.errors import UserError

    images = np.zeros((2, 32, 32, 3), dtype=np.float32)
    one_hot = np.eye(10, dtype=np.float32)[[1, 2]]
    with KerasWorker("torch", 8, "gaaf_relu", images, one_hot, steps=1, threads=1) as worker:
        assert worker.backend == "torch" and worker.keras_version.startswith("3")
        assert worker._proc.pid != os.getpid()
        worker()
        worker()
    assert worker._proc.poll() == 0
    with pytest.raises(UserError, match=r"depth must be 6n\+2"):
        KerasWorker("torch", 9, "relu", images, one_hot, steps=1)
