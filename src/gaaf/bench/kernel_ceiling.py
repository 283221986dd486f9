r"""The floor under GAAF's cost in a training step: its activation kernels alone.

GAAF's exact math is more arithmetic per element than relu's: for gaaf_relu one exponential (the
sigmoid shape) in the forward and again in the backward, which recomputes it from x (the op saves
only x), plus the sawtooth. Both read and write the same tensors, so the difference is compute. This
module measures it with nothing else around it:

* for each GAAF site of the model (the element count a training step feeds it, found with
  forward hooks), one forward and one backward kernel: relu as eager PyTorch runs it
  (``clamp_min`` and ``threshold_backward``), gaaf_relu as the fused op runs it (its compiled eager
  kernels, or the plain math where those are off), on 1-D contiguous tensors;
* the candidates alternate round by round (:mod:`._timing`); the medians, summed over the sites,
  give seconds per training step for each, and their difference ``extra_s``.

However well the rest of a step is fused, gaaf_relu adds about ``extra_s``; with relu's measured
step time T the gaaf_relu/relu throughput ratio can reach at most ``T / (T + extra_s)``
(:meth:`Floor.ceiling`). ``gaaf bench train`` prints it under its table, per model and mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..activations import GAAF
from ..activations import kernels as gaaf_kernels
from ..activations.spec import GAAFSpec
from ..models import activation_sites
from ._timing import Sync, alternate


@dataclass(frozen=True)
class Floor:
    """Seconds per training step spent in the activation kernels alone, relu vs gaaf_relu."""

    sites: tuple[int, ...]  # elements per activation site, in forward order
    relu_s: float  # relu forward + backward kernels over all sites
    gaaf_s: float  # gaaf_relu's fused forward + backward kernels over all sites

    @property
    def extra_s(self) -> float:
        return self.gaaf_s - self.relu_s

    def ceiling(self, relu_step_s: float) -> float:
        """The highest gaaf_relu/relu throughput ratio for a relu step of `relu_step_s` seconds."""
        return relu_step_s / (relu_step_s + max(self.extra_s, 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {"sites": len(self.sites), "elements": sum(self.sites), "relu_s": self.relu_s,
                "gaaf_s": self.gaaf_s, "extra_s": self.extra_s}


def gaaf_sites(model: nn.Module, x: torch.Tensor) -> "tuple[GAAFSpec | None, list[int]]":
    """The GAAF spec of `model`'s activation sites and the elements entering each GAAF site for the
    batch `x`, from one no-grad forward in eval mode (batch-norm statistics are left alone).
    ``(None, [])`` for a model without GAAF sites; several specs: the first one's."""
    mods = [m for _, m in activation_sites(model) if isinstance(m, GAAF)]
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: sizes.append(args[0].numel())) for m in mods]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return (mods[0].spec if mods else None), sizes


def activation_floor(spec: GAAFSpec, sizes: Sequence[int], device: torch.device, rounds: int = 9,
                     sync: Sync = None) -> Floor:
    """Time relu's and the fused op's forward+backward kernels at every site size (see module doc)."""
    if not sizes:
        raise ValueError("activation_floor needs at least one activation site")
    counts = {n: sizes.count(n) for n in sorted(set(sizes))}
    cands: dict[str, Callable[[], Any]] = {}
    gen = torch.Generator(device="cpu").manual_seed(0)
    for n in counts:
        x = torch.randn(n, generator=gen).to(device)
        g = torch.randn(n, generator=gen).to(device)
        y = torch.relu(x)
        cands[f"relu/{n}"] = lambda x=x, g=g, y=y: (torch.relu(x), torch.ops.aten.threshold_backward(g, y, 0.0))
        cands[f"gaaf/{n}"] = lambda x=x, g=g: (gaaf_kernels.forward_flat(x, spec),
                                                gaaf_kernels.backward_flat(x, g, spec))
    timings = alternate(cands, rounds, warmup=2, sync=sync)
    relu = sum(k * timings[f"relu/{n}"].median for n, k in counts.items())
    gaaf = sum(k * timings[f"gaaf/{n}"].median for n, k in counts.items())
    return Floor(tuple(sizes), relu, gaaf)


__all__ = ["Floor", "activation_floor", "gaaf_sites"]
