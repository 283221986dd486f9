r"""Peak memory of one training step, and the target a train ratio is held to.

**Peak memory.** On CUDA, ``torch.cuda.max_memory_allocated`` after a reset, less what was
allocated before the step. On CPU there is no such counter, so one step runs under
``torch.profiler`` with ``profile_memory=True`` and the allocation events (+bytes) and frees
(−bytes) are summed in time order: the running total's maximum is the most memory the step held
at once above what it started with (saved activations, gradients, temporaries). The same count
for every candidate, so the figures compare; it leaves out memory allocated before the step
(weights, optimizer state, the batch), which the candidates share.

**Target.** GAAF's exact math costs some arithmetic per element (:mod:`.kernel_ceiling`); with
relu's step T and the activation kernels' extra time E the train ratio can reach at most the
ceiling c = T / (T + E). Where c ≥ 0.99 (the exponential is nearly free) the target is a paired
ratio ≥ 0.97; where it is lower (the exponential binds, e.g. on AVX2 machines, or AVX-512
machines whose exp/div throughput is low) the target is c − 0.02 (:func:`ratio_target`).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

#: where the floor allows at least this ratio, the exponential counts as free ...
FREE_CEILING = 0.99
#: ... and a paired train ratio of this much is the target
FREE_TARGET = 0.97
#: otherwise the target is the ceiling less this
BOUND_MARGIN = 0.02


class Target(NamedTuple):
    case: str  # "floor allows >= 0.99" or "exponential binds"
    value: float  # the paired ratio to reach


def ratio_target(ceiling: float) -> "Target | None":
    """The paired train-ratio target for a floor ceiling (None without a ceiling); see the module doc."""
    if not math.isfinite(ceiling):
        return None
    if ceiling >= FREE_CEILING:
        return Target(f"floor allows >= {FREE_CEILING:.2f}", FREE_TARGET)
    return Target("exponential binds", ceiling - BOUND_MARGIN)


def peak_step_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Most bytes held at once during one call of `step` (already warm) above what was held before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak


__all__ = ["BOUND_MARGIN", "FREE_CEILING", "FREE_TARGET", "Target", "peak_step_bytes", "ratio_target"]
