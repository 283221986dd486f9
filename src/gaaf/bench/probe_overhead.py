"""What `gaaf train --probe` costs a training step: blocks of the engine's step (built by
:func:`gaaf.train.setup.build_training`, as in training) timed without and with an
:class:`gaaf.train.probes.ActivationProbe` (one sampled step per block, as in training)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

import torch

from ..train.config import TrainConfig
from ..train.probes import DEFAULT_EVERY, ActivationProbe
from ..train.setup import build_training
from ..train.step import new_accumulator


def measure_probe_overhead(
    model: str = "resnet20_v1",
    activation: str = "relu",
    *,
    batch_size: int = 128,
    every: int = DEFAULT_EVERY,
    blocks: int = 3,
    device: str = "cpu",
    in_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Time blocks of `every` training steps (the engine's step on one fixed random batch) without and
    with the probe, alternating (A B, B A, ...) to cancel drift; return the medians per step and the
    overhead in percent. Each probed block holds exactly one sampled step, as in training."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    cfg = TrainConfig(model=model, activation=activation, batch_size=batch_size, device=device)
    run = build_training(cfg, dev, in_shape, num_classes)
    net, step = run.model, run.step
    x = torch.randn(batch_size, *in_shape, device=dev)        # (B, C, H, W)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)  # (B,)
    acc = new_accumulator(dev)

    def block(probed: bool) -> float:
        probe = ActivationProbe(net, every=every) if probed else None
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(every):
            step(x, y, acc)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = (time.perf_counter() - t0) / every
        if probe is not None:
            probe.end_epoch(1, reduce=False)
            probe.close()
        return seconds

    for _ in range(2):  # warm-up: allocator, kernels, and the probe's first-sample allocations
        step(x, y, acc)
    block(True)
    base: list[float] = []
    probed: list[float] = []
    for r in range(blocks):
        for flag in ((False, True) if r % 2 == 0 else (True, False)):
            (probed if flag else base).append(block(flag))
    b, p = statistics.median(base), statistics.median(probed)
    return {
        "model": model, "activation": activation, "batch_size": batch_size, "every": every, "blocks": blocks,
        "device": str(dev), "baseline_seconds_per_step": b, "probe_seconds_per_step": p,
        "overhead_percent": 100.0 * (p / b - 1.0),
    }
