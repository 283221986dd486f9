r"""`gaaf.strip(model)`: the base activation back in place of every GAAF module, for deployment.

    model, report = gaaf.strip(model, example=x)   # x: an input batch, to measure the change
    print(report)
    # gaaf.strip: 19 GAAF modules -> their base (relu x19); output moved by 0.000307 at most on the
    # example (each activation moves by at most 0.5·max s/K = 5e-05)

GAAF's forward is φ(x) + g(x)·s(x) with |g| ≤ 0.5/K, so putting φ back moves each activation's
output by at most 0.5·max s/K (s ≤ 1 for the named shapes; 0 for the surrogate variant, whose
forward is φ itself). What the network's output does is measured, not bounded: pass `example`.
The gradient acceleration only matters in training; a stripped model computes the plain network.

Shared instances stay shared; the model is changed in place and returned (a new root where
`model` itself is a GAAF module). GAAF called as a function (``gaaf.functional.gaaf``) in a
forward is not a module and stays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from ..activations import GAAF
from ..activations.registry import PLAIN_ACTIVATIONS


@dataclass
class StripReport:
    """stripped: (site name, the GAAF it was) per module instance; bound: the largest 0.5·max s/K of
    them (None where a callable shape makes it unknown); measured: max |Δ| over the example's outputs."""

    stripped: "list[tuple[str, str]]" = field(default_factory=list)
    bases: "dict[str, int]" = field(default_factory=dict)
    bound: "float | None" = 0.0
    measured: "float | None" = None

    def __str__(self) -> str:
        n = len(self.stripped)
        bases = ", ".join(f"{b} x{c}" for b, c in self.bases.items())
        head = f"gaaf.strip: {n} GAAF module{'' if n == 1 else 's'} -> their base" + (f" ({bases})" if bases else "")
        if self.bound is None:
            per = "a callable shape s(x): no bound"
        else:
            per = f"each activation moves by at most 0.5·max s/K = {self.bound:.3g}"
        if self.measured is None:
            return f"{head}; {per}"
        return f"{head}; output moved by {self.measured:.3g} at most on the example ({per})"


def _bound(module: GAAF) -> "float | None":
    """0.5·max s/K of one GAAF module: s ≤ 1 for every named shape, unknown for a callable."""
    spec = module.spec
    if spec.variant == "surrogate":
        return 0.0
    if not isinstance(spec.shape, str):
        return None
    return 0.5 / spec.frequency


def _tensors(out: Any) -> Iterator[torch.Tensor]:
    """Every floating tensor in a model's output (a tensor, tuple, list or dict of them, nested)."""
    if isinstance(out, torch.Tensor):
        if out.is_floating_point():
            yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _tensors(v)


def output_change(before: Any, after: Any) -> float:
    """max |after − before| over the floating tensors of two outputs of the same structure."""
    pairs = list(zip(_tensors(before), _tensors(after)))
    return max((float((b.double() - a.double()).abs().max()) for a, b in pairs if a.numel()), default=0.0)


def _run(model: nn.Module, example: Any) -> Any:
    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        return model(*args)


def strip(model: nn.Module, example: Any = None) -> "tuple[nn.Module, StripReport]":
    """Replace every GAAF module of `model` by its base's plain torch module (nn.ReLU, nn.Tanh, ...).

    example: an input (or a tuple of inputs) to measure the change of the output on, in eval mode
    (the model's mode is restored). Returns (the model, a :class:`StripReport`)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"strip needs an nn.Module, got {type(model).__name__}")
    was_training = model.training
    before = None
    if example is not None:
        model.eval()
        before = _run(model, example)
    report = StripReport()
    new_root, bounds = _replace(model, report)
    report.bound = None if any(b is None for b in bounds) else max(bounds, default=0.0)
    result = new_root if new_root is not None else model
    if example is not None:
        report.measured = output_change(before, _run(result, example))
    result.train(was_training)
    return result, report


def _replace(model: nn.Module, report: StripReport) -> "tuple[nn.Module | None, list[float | None]]":
    places: "dict[int, list[tuple[nn.Module | None, str, str]]]" = {}
    instances: "dict[int, GAAF]" = {}
    if isinstance(model, GAAF):
        places[id(model)], instances[id(model)] = [(None, "", "")], model
    for pname, parent in model.named_modules(remove_duplicate=False):
        for attr, child in parent._modules.items():
            if isinstance(child, GAAF):
                places.setdefault(id(child), []).append((parent, attr, f"{pname}.{attr}" if pname else attr))
                instances[id(child)] = child
    new_root, bounds = None, []
    for key, gaaf_module in instances.items():
        plain = PLAIN_ACTIVATIONS[gaaf_module.spec.base]()
        plain.train(gaaf_module.training)
        name = min(q for _, _, q in places[key])
        report.stripped.append((name, gaaf_module.spec.describe()))
        report.bases[gaaf_module.spec.base] = report.bases.get(gaaf_module.spec.base, 0) + 1
        bounds.append(_bound(gaaf_module))
        for parent, attr, _ in places[key]:
            if parent is None:
                new_root = plain
            else:
                setattr(parent, attr, plain)
    return new_root, bounds


__all__ = ["StripReport", "output_change", "strip"]
