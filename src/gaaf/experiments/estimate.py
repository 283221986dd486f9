"""A rough time estimate for a sweep, from a short measured warm-up.

We build the first run's model, optimizer and train step as `gaaf train` does
(`gaaf.train.setup.build_training`), run two warm-up steps on one synthetic batch at the run's
batch size, time a few more (the median), and scale:

    seconds ≈ Σ_runs (start-up + step_time · epochs left · (⌈n_train / batch⌉ + ⌈n_test / batch⌉ / 3))

(an evaluation step is a forward pass only: about a third of a training step). start-up is the
measured time to start a Python process that imports gaaf's training code and runs the first run's
first step (loading the fused GAAF kernels). The warm-up's compile of those kernels is reported
apart ("a one-off compile of ~N s"): it is spent before the estimate is printed, and the kernels
are saved on disk (`gaaf.activations.compile_cache`), so the runs load them instead. `gaaf sweep
--dry-run` and a real sweep print this same estimate. Data loading and
per-epoch checkpoints are not counted, so the estimate is a lower bound for tiny runs and close
for long ones. With N parallel jobs the step is timed at the per-job
thread count and the total divided by N.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import subprocess
import sys
import time
from typing import Any, NamedTuple

import torch

from ..activations import kernels
from ..data import dataset_info
from ..train.config import resolve_config
from ..train.setup import build_training
from ..train.step import new_accumulator


class StepTiming(NamedTuple):
    """What :func:`measure_step_seconds` measured."""

    seconds: float  # one training step, warmed up
    one_off: float  # seconds the warm-up spent compiling (or loading) the fused GAAF kernels


def measure_step_seconds(config: dict[str, Any], threads: int, steps: int = 3, warmup: int = 2) -> StepTiming:
    """Seconds per training step of `config` (a train config dict, as the sweep resolves each run) on
    a synthetic batch, on the CPU with `threads` threads, timed over up to `steps` steps after
    `warmup` untimed ones (first-call costs: the allocator, the fused GAAF kernels' compile).

    The step is the one `gaaf train` runs, built by `gaaf.train.setup.build_training` (optimizer,
    l2 term, amp and channels_last as configured), but not compiled as a whole: compiling costs
    more time than the estimate is worth, and the eager step is the slower one. The seconds the
    warm-up spent compiling the eager GAAF kernels are returned apart (`one_off`): the compiled
    kernels are saved on disk, so the runs pay it at most once."""
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
        compile0 = kernels.compile_seconds()
        for _ in range(max(1, warmup)):
            run.step(x, y, acc)
        one_off = kernels.compile_seconds() - compile0
        times: list[float] = []
        t_start = time.perf_counter()
        while len(times) < steps and (not times or time.perf_counter() - t_start < 2.0):  # ≤ ~2 s when slow
            t0 = time.perf_counter()
            run.step(x, y, acc)
            times.append(time.perf_counter() - t0)
        return StepTiming(statistics.median(times) if times else math.nan, one_off)
    finally:
        torch.set_num_threads(old_threads)


def measure_startup_seconds(config: dict[str, Any] | None = None, threads: int = 1) -> float:
    """Wall time to start a Python process that imports gaaf's training code and, given a run's
    `config`, builds its training and runs one step (the fused GAAF kernels' first call: loaded
    from gaaf's on-disk cache once the estimate's warm-up has compiled them)."""
    code = "import gaaf.train.engine"
    if config is not None:
        code += f"; from gaaf.experiments import estimate; estimate._first_step({json.dumps(config)!r}, {int(threads)})"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300, check=False)
    return time.perf_counter() - t0


def _first_step(config_json: str, threads: int) -> None:
    """One training step of a run's config on a synthetic batch (the start-up child's work)."""
    measure_step_seconds(json.loads(config_json), threads, steps=0, warmup=1)


def steps_per_run(config: dict[str, Any], epochs_left: int) -> float:
    """Training-step equivalents of `epochs_left` epochs of `config` (evaluation counted as 1/3),
    at most its max_iterations training steps (an upper bound for a run partly done)."""
    data = dataset_info(config.get("dataset", "cifar10"))
    batch = max(1, int(config.get("batch_size", 128)))
    n_train = min(config.get("limit_train") or data.n_train, data.n_train)
    n_test = min(config.get("limit_test") or data.n_test, data.n_test)
    per_epoch, limit = math.ceil(n_train / batch), config.get("max_iterations")
    train_steps = epochs_left * per_epoch
    if limit:
        epochs_left = min(epochs_left, math.ceil(limit / per_epoch))
        train_steps = min(train_steps, limit)
    return train_steps + epochs_left * math.ceil(n_test / batch) / 3.0


def format_seconds(s: float) -> str:
    """`45 s`, `12 min`, `3.4 h`."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
