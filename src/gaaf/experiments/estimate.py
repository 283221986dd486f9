"""A rough time estimate for a sweep, from a short measured warm-up.

We build the first run's model, time a few optimizer steps on one synthetic batch at the run's
batch size, and scale:

    seconds ≈ Σ_runs (start-up + step_time · epochs left · (⌈n_train / batch⌉ + ⌈n_test / batch⌉ / 3))

(an evaluation step is a forward pass only: about a third of a training step). start-up is the
measured time to start a Python process that imports gaaf's training code. Data loading and
per-epoch checkpoints are not counted, so the estimate is a lower bound for tiny runs and close
for long ones. With N parallel jobs the step is timed at the per-job
thread count and the total divided by N.
"""
from __future__ import annotations

import math
import subprocess
import sys
import time
from typing import Any

import torch
from torch import nn

from ..activations import activation_params
from ..data import dataset_info
from ..models import build_model


def measure_step_seconds(config: dict[str, Any], threads: int, steps: int = 3) -> float:
    """Seconds per training step of `config`'s model on a synthetic batch (CPU, `threads` threads)."""
    data = dataset_info(config.get("dataset", "cifar10"))
    in_shape, classes = data.in_shape, data.num_classes
    act_params = activation_params(config)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        torch.manual_seed(0)
        model = build_model(
            config.get("model", "resnet20_v1"), classes, in_shape, config.get("activation", "relu"), act_params,
            stem_activation=config.get("stem_activation"), batch_norm=config.get("batch_norm", True),
            hidden=config.get("hidden"), dropout=config.get("dropout", 0.0),
        )  # fmt: skip
        model.train()
        params = model.parameters()
        opt = torch.optim.SGD(params, lr=0.01) if config.get("optimizer") == "sgd" else torch.optim.Adam(params)
        batch = int(config.get("batch_size", 128))
        x = torch.randn(batch, *in_shape)
        y = torch.randint(0, classes, (batch,))
        loss_fn = nn.CrossEntropyLoss()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

        step()  # warm-up: allocator, first-call overheads
        t0 = time.perf_counter()
        done = 0
        while done < steps and (done == 0 or time.perf_counter() - t0 < 2.0):  # ≤ ~2 s on a slow machine
            step()
            done += 1
        return (time.perf_counter() - t0) / done
    finally:
        torch.set_num_threads(old_threads)


def measure_startup_seconds() -> float:
    """Wall time to start a Python process that imports torch and gaaf's training code."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gaaf.train.engine"], capture_output=True, timeout=300, check=False)
    return time.perf_counter() - t0


def steps_per_run(config: dict[str, Any], epochs_left: int) -> float:
    """Training-step equivalents of `epochs_left` epochs of `config` (evaluation counted as 1/3)."""
    data = dataset_info(config.get("dataset", "cifar10"))
    batch = max(1, int(config.get("batch_size", 128)))
    n_train = min(config.get("limit_train") or data.n_train, data.n_train)
    n_test = min(config.get("limit_test") or data.n_test, data.n_test)
    return epochs_left * (math.ceil(n_train / batch) + math.ceil(n_test / batch) / 3.0)


def format_seconds(s: float) -> str:
    """`45 s`, `12 min`, `3.4 h`."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
