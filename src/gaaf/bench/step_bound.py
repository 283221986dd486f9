r"""The fastest a training step could be: its convolutions plus its activation kernels, nothing else.

``gaaf bench keras`` compares `gaaf train`'s step with the seed's Keras stack. How far that ratio can
go is bounded by work no step can skip. For a ResNet on CPU most of a step is convolution (oneDNN,
forward and backward: on a 2-core Xeon about 70% of ResNet20's compiled relu step). This module
measures, for one candidate step:

* ``conv_s``: the self time of every convolution op in the step (``torch.profiler``, ops whose name
  contains ``conv``: ``mkldnn_convolution``, ``convolution_backward``, ...), per step;
* ``act_s``: the activation kernels alone at every site (:func:`.kernel_ceiling.activation_floor`:
  relu's ``clamp_min`` + ``threshold_backward``, or gaaf_relu's fused forward + backward).

With B images per step, no step doing that work can exceed

.. math::  \text{img/s} \le \frac{B}{t_\text{conv} + t_\text{act}}

(batch norm, the residual adds, the loss and the optimizer counted as free). Dividing by another
stack's measured img/s gives the highest gaaf/keras ratio reachable with these convolutions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .train import profile_ops


@dataclass(frozen=True)
class StepBound:
    """Seconds per step of the work any step must do, and the img/s that allows."""

    images: int  # images per step (the batch)
    conv_s: float  # convolutions' self time per step (profiled)
    act_s: float  # the activation kernels alone per step

    @property
    def images_per_second(self) -> float:
        return self.images / (self.conv_s + self.act_s)

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "conv_s": self.conv_s, "act_s": self.act_s,
                "images_per_second": self.images_per_second}


def conv_seconds(step: Callable[[], None], n: int, device: torch.device) -> float:
    """Self time per call of `step` (already warm) spent in convolution ops, over `n` profiled calls."""
    if n < 1:
        raise ValueError(f"conv_seconds needs at least one profiled step, got {n}")
    ops = profile_ops(step, n, device, top=None)
    return sum(op["ms_per_step"] for op in ops if "conv" in op["op"].lower()) / 1e3


__all__ = ["StepBound", "conv_seconds"]
