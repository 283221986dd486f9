"""A rough time estimate for a sweep, from a short measured warm-up.

We build the first run's model, optimizer and train step as `gaaf train` does
(`gaaf.train.setup.build_training`), time a few steps on one synthetic batch at the run's batch
size, and scale:

    seconds ≈ Σ_runs (start-up + step_time · epochs left · (⌈n_train / batch⌉ + ⌈n_test / batch⌉ / 3))

(an evaluation step is a forward pass only: about a third of a training step). start-up is the
measured time to start a Python process that imports gaaf's training code. Data loading and
per-epoch checkpoints are not counted, so the estimate is a lower bound for tiny runs and close
for long ones. With N parallel jobs the step is timed at the per-job
thread count and the total divided by N.
"""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import time
from typing import Any

import torch

from ..data import dataset_info
from ..train.config import resolve_config
from ..train.setup import build_training
from ..train.step import new_accumulator


def measure_step_seconds(config: dict[str, Any], threads: int, steps: int = 3) -> float:
    """Seconds per training step of `config` (a train config dict, as the sweep resolves each run) on
    a synthetic batch, on the CPU with `threads` threads.

    The step is the one `gaaf train` runs, built by `gaaf.train.setup.build_training` (optimizer,
    l2 term, amp and channels_last as configured), but not compiled: compiling costs more time than
    the estimate is worth, and the eager step is the slower one."""
    cfg = dataclasses.replace(resolve_config(config), compile=False)
    data = dataset_info(cfg.dataset)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        torch.manual_seed(0)
        run = build_training(cfg, torch.device("cpu"), data.in_shape, data.num_classes)
        run.net.train()
        x = torch.randn(cfg.batch_size, *data.in_shape)                  # (B, C, H, W)
        y = torch.randint(0, data.num_classes, (cfg.batch_size,))        # (B,)
        acc = new_accumulator("cpu")
        run.step(x, y, acc)  # warm-up: allocator, first-call overheads
        t0 = time.perf_counter()
        done = 0
        while done < steps and (done == 0 or time.perf_counter() - t0 < 2.0):  # ≤ ~2 s on a slow machine
            run.step(x, y, acc)
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
