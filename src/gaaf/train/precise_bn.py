"""Precise BatchNorm statistics for evaluation: recompute them with the weights being evaluated.

Evaluation normalises with each BatchNorm's moving statistics. Those are an exponential average
(momentum 0.99: a window of ~100 steps) of batch statistics computed with *earlier* weights, so
early in a run, while the weights still move fast, they describe a network that no longer exists.
Measured on the CIFAR-10 proxy (ResNet20 v1, gaaf_relu shift −1, the seed recipe at batch 128,
2 epochs on 10,000 images = 158 steps, test on 2,000; README, the seed preset): the moving
statistics score 24.90% (PyTorch's) and 24.95% (Keras 2.2's zero-debiased ones), the same weights
with statistics recomputed from 512 to 4,096 training images 42.30–42.80%.
Long runs end
at a small learning rate, where the two agree.

`recalibrate(model, images, n)` therefore does what "precise BN" does (Wu & Johnson 2021,
"Rethinking 'Batch' in BatchNorm"; pycls's ``compute_precise_bn_stats``): before an evaluation it
runs `n` training images (evenly spaced over the training set, no augmentation, in batches, the
model in train mode as training runs it, without gradients) and sets every BatchNorm's

    running_mean = mean of its inputs over all n images (per channel)
    running_var  = their unbiased variance over all n images (per channel; Chan's pairwise merge
                   of per-batch moments in float64)

Nothing else changes: the weights, the optimizer, the random streams (forked) and every other
buffer (KerasBatchNorm2d's debias state, num_batches_tracked) are as before, so the trained weights
are bit-identical with and without it; only what evaluation (and the checkpoint written after it)
normalises with differs.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of `model` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]


def evenly_spaced(total: int, n: int) -> torch.Tensor:
    """min(n, total) indices spread evenly over range(total): i·total // n."""
    n = min(n, total)
    return torch.arange(n, dtype=torch.int64) * total // n


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        dims = [d for d in range(x.dim()) if d != 1]
        x = x.detach().to(torch.float64)
        k = x.numel() // x.shape[1]
        var, mean = torch.var_mean(x, dim=dims, unbiased=False)
        m2 = var * k
        if self.mean is None:
            self.count, self.mean, self.m2 = k, mean, m2
            return
        total = self.count + k
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * k / total)
        self.count = total

    def variance(self) -> torch.Tensor:
        assert self.m2 is not None
        return self.m2 / max(self.count - 1, 1)


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        yield


@torch.no_grad()
def recalibrate(model: nn.Module, images: torch.Tensor, n: int, *, batch_size: int = 128,
                channels_last: bool = False, autocast: contextlib.AbstractContextManager | None = None) -> int:
    """Set every BatchNorm's running statistics of `model` to those of `n` images of `images`
    (evenly spaced, in batches of `batch_size`), computed with the current weights (module doc).

    Returns how many images were used (0: no BatchNorm in `model` or n = 0, nothing done)."""
    norms = batch_norms(model)
    if n <= 0 or not norms or len(images) == 0:
        return 0
    saved = {id(m): {k: b.clone() for k, b in m.named_buffers(recurse=False) if b is not None} for m in norms}
    moments = {id(m): _Moments() for m in norms}
    hooks = [m.register_forward_pre_hook(lambda mod, args: moments[id(mod)].add(args[0])) for m in norms]
    was_training = model.training
    idx = evenly_spaced(len(images), n).to(images.device)
    try:
        model.train()
        with _forked_rng(images.device):
            for start in range(0, len(idx), batch_size):
                x = images[idx[start:start + batch_size]]
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast if autocast is not None else contextlib.nullcontext():
                    model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        for m in norms:  # every buffer back as it was (the train-mode passes updated them) ...
            for k, b in m.named_buffers(recurse=False):
                if b is not None and k in saved[id(m)]:
                    b.copy_(saved[id(m)][k])
    for m in norms:  # ... then the recomputed statistics
        stats = moments[id(m)]
        if stats.mean is not None:
            m.running_mean.copy_(stats.mean.to(m.running_mean.dtype))
            m.running_var.copy_(stats.variance().to(m.running_var.dtype))
    return len(idx)
