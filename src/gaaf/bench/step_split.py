r"""Where a training step's time goes: torch.profiler's self time, split by phase and by kind.

The profiler runs over `n` warm steps of each candidate, one step per candidate in turn
(:func:`profile_alternating`), and gives both views ``gaaf bench train --profile`` prints: the top
ops by self time (:func:`top_ops`) and the split (:func:`split`), each op's self time (device time
on CUDA) added to one cell of

* **phase**: ``backward`` where the op runs under autograd's engine (an ancestor
  ``autograd::engine::evaluate_function: …``, or the compiled graph's ``CompiledFunctionBackward``),
  ``optimizer`` under ``Optimizer.step`` / ``Optimizer.zero_grad``, else ``forward`` (the loss included);
* **kind**: ``convolution`` (ATen's convolution ops: mkldnn/cuDNN forward, ``convolution_backward``),
  ``compiled kernels`` (torch.compile's generated code: ``## Call CompiledFxGraph …`` holds the self
  time of the fused kernels it runs, or each kernel by name where Inductor's kernel profile is on),
  else ``other ops`` (batch norm, activations, adds and copies of an eager step; the profiler's own
  bookkeeping).

Side by side for relu and gaaf_relu (:func:`split_lines`), the cells say which part of the step
GAAF's extra time sits in: e.g. compiled ResNet20 v1 on the CPU, where the convolutions take the
same time for both and the difference is in the compiled kernels of the backward. Self times add up
to the profiled step's total (plus profiler overhead), so the split sums to the step.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Optional

import torch

PHASES = ("forward", "backward", "optimizer")
KINDS = ("convolution", "compiled kernels", "other ops")

_CONVOLUTION = re.compile(r"conv(olution|\d?d\b|_tbc|_transpose)", re.IGNORECASE)
_COMPILED = ("CompiledFxGraph", "cpp_fused", "triton_")


def run_profiler(step: Callable[[], None], n: int, device: torch.device) -> Any:
    """torch.profiler (CPU, and CUDA on a GPU) over `n` calls of `step`, synchronized at the end."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof


def _attr(device: torch.device) -> str:
    return "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"


def op_totals(prof: Any, device: torch.device) -> "dict[str, tuple[float, int]]":
    """{op name: (self microseconds, calls)} over a profiler run."""
    attr = _attr(device)
    return {e.key: (getattr(e, attr), e.count) for e in prof.key_averages() if getattr(e, attr, 0) > 0}


def top_ops(totals: "dict[str, tuple[float, int]]", n: int, top: "int | None" = 12) -> list[dict[str, Any]]:
    """The `top` ops (None: all) by self time from :func:`op_totals` over `n` steps, each with its
    call count, self milliseconds per step and share of all self time."""
    total = sum(t for t, _ in totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: kv[1][0], reverse=True)
    return [{"op": name, "calls_per_step": count / n, "ms_per_step": t / 1e3 / n, "share": t / total}
            for name, (t, count) in ranked[:top]]  # [:None] keeps all


def profile_alternating(steps: "dict[str, Callable[[], None]]", n: int, device: torch.device,
                        top: "int | None" = 12) -> "tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, float]]]":
    """Profile each candidate's step `n` times, one step per candidate in turn (relu, gaaf_relu, relu,
    ...), so a drift of the machine's speed falls on both alike: ({key: top ops}, {key: split})."""
    totals: dict[str, dict[str, list[float]]] = {k: {} for k in steps}
    cells: dict[str, dict[str, float]] = {k: {f"{p}/{c}": 0.0 for p in PHASES for c in KINDS} for k in steps}
    for _ in range(n):
        for key, step in steps.items():
            prof = run_profiler(step, 1, device)
            for name, (t, count) in op_totals(prof, device).items():
                acc = totals[key].setdefault(name, [0.0, 0])
                acc[0] += t
                acc[1] += count
            for cell, ms in split(prof, 1, device).items():
                cells[key][cell] += ms / n
    tops = {k: top_ops({name: (t, int(c)) for name, (t, c) in v.items()}, n, top) for k, v in totals.items()}
    return tops, cells


def phase_of(ancestors: Iterable[str]) -> str:
    """``backward``, ``optimizer`` or ``forward`` from the names of an op's enclosing profiler events."""
    names = list(ancestors)
    if any(a.startswith("autograd::engine::evaluate_function") or a == "CompiledFunctionBackward" for a in names):
        return "backward"
    if any(a.startswith(("Optimizer.step", "Optimizer.zero_grad")) for a in names):
        return "optimizer"
    return "forward"


def kind_of(name: str) -> str:
    """``compiled kernels``, ``convolution`` or ``other ops`` from an op's profiler name."""
    if any(tag in name for tag in _COMPILED):
        return "compiled kernels"
    if _CONVOLUTION.search(name):
        return "convolution"
    return "other ops"


def split(prof: Any, n: int, device: torch.device) -> dict[str, float]:
    """``{"phase/kind": self milliseconds per step}`` over every profiled op (all cells present)."""
    attr = _attr(device)
    cells = {f"{p}/{k}": 0.0 for p in PHASES for k in KINDS}
    for event in prof.events():
        t = getattr(event, attr, 0.0)
        if not t:
            continue
        cells[f"{phase_of(_ancestors(event))}/{kind_of(event.name)}"] += t / 1e3 / n
    return cells


def _ancestors(event: Any) -> Iterable[str]:
    parent: Optional[Any] = getattr(event, "cpu_parent", None)
    while parent is not None:
        yield parent.name
        parent = getattr(parent, "cpu_parent", None)


def split_lines(splits: "dict[str, dict[str, float]]", steps: int) -> list[str]:
    """A table per model/mode holding both activations: ms per step of each nonzero cell, relu,
    gaaf_relu and the difference, then the totals. `splits` is keyed "model/mode/activation"."""
    pairs: dict[str, dict[str, dict[str, float]]] = {}
    for key, cells in splits.items():
        model_mode, act = key.rsplit("/", 1)
        pairs.setdefault(model_mode, {})[act] = cells
    lines: list[str] = []
    for model_mode, acts in pairs.items():
        relu, gaaf = acts.get("relu"), acts.get("gaaf_relu")
        if relu is None or gaaf is None:
            continue
        lines += ["", f"where the time goes {model_mode}: self time, ms per step (torch.profiler over {steps} "
                      f"step{'s' if steps != 1 else ''} each)",
                  f"  {'phase':<11}{'kind':<18}{'relu':>9}{'gaaf_relu':>11}{'gaaf − relu':>13}"]
        for cell in relu:
            if relu[cell] >= 0.005 or gaaf[cell] >= 0.005:
                phase, kind = cell.split("/")
                lines.append(f"  {phase:<11}{kind:<18}{relu[cell]:>9.2f}{gaaf[cell]:>11.2f}{gaaf[cell] - relu[cell]:>+13.2f}")
        tr, tg = sum(relu.values()), sum(gaaf.values())
        lines.append(f"  {'total':<29}{tr:>9.2f}{tg:>11.2f}{tg - tr:>+13.2f}")
    return lines


__all__ = ["PHASES", "KINDS", "run_profiler", "op_totals", "top_ops", "profile_alternating", "phase_of", "kind_of", "split", "split_lines"]
