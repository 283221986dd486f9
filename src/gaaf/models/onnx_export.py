r"""ONNX export of a model with GAAF activations, with torch's recommended exporter, checked in onnxruntime.

    report = gaaf.export_onnx(model, example, "model.onnx")            # GAAF kept in the graph
    report = gaaf.export_onnx(model, example, "plain.onnx", strip=True)  # the base activations
    print(report)   # wrote model.onnx (ONNX opset 20, 17.9 kB, batch dimension dynamic); onnxruntime ...

The exporter is ``torch.onnx.export(..., dynamo=True)`` (torch.export, then onnxscript's
translation; the default since torch 2.9), which needs the ``onnx`` and ``onnxscript`` packages:
``pip install 'gaaf[export]'`` (with ``onnxruntime``, which runs the check).

GAAF in the graph. The fused op is an autograd Function whose eager path may run compiled kernels;
under torch.export (``torch.compiler.is_compiling()``) it takes its plain path, the closed-form
φ(x) + g(x)·s(x) of :mod:`gaaf.activations.pointwise` written with ATen ops (mul, floor, sub,
where, exp, ...), and that is what the ONNX graph holds: standard operators only, no custom op.

Checked. With onnxruntime installed, the written file is run on the example and on a batch of
another size (the batch dimension is dynamic), and the largest difference from torch's output is
reported. The GAAF formula itself is exported exactly (the same floor of the same x·K, tested per
base to float32 rounding). In a whole network, though, a matmul or convolution that onnxruntime
rounds differently from torch moves an input x by an ulp or so, and where that carries x·K across
an integer the sawtooth jumps there by s(x)/K ≤ 1/K: outputs agree to float32 rounding plus such
jumps (measured: 2.4e-4 on a random-weight ResNet-20's logits, which reach 89, at K = 1e4). A stripped model
(`strip=True`, :func:`gaaf.strip`) has no sawtooth and agrees to float32 rounding alone.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..errors import UserError
from ..io import atomic_write_bytes
from .strip import StripReport, output_change, strip as strip_gaaf

INSTALL_HINT = "pip install 'gaaf[export]' (onnx, onnxscript, onnxruntime)"


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how the file compares with torch in onnxruntime."""

    path: str
    opset: int
    size: int                                   # bytes
    dynamic_batch: bool
    max_abs_diff: "float | None" = None         # onnxruntime vs torch on the check batches (None: not run)
    checked_batches: "tuple[int, ...]" = ()
    stripped: "StripReport | None" = None
    runtime_missing: bool = False

    def __str__(self) -> str:
        size = f"{self.size / 1e6:.1f} MB" if self.size >= 1e6 else f"{self.size / 1e3:.1f} kB"
        batch = "batch dimension dynamic" if self.dynamic_batch else "fixed batch size"
        line = f"wrote {self.path} (ONNX opset {self.opset}, {size}, {batch})"
        if self.stripped is not None:
            line += f"; {self.stripped}"
        if self.max_abs_diff is not None:
            sizes = " and ".join(str(b) for b in self.checked_batches)
            line += f"; onnxruntime vs torch on batches of {sizes}: max |diff| {self.max_abs_diff:.3g}"
        elif self.runtime_missing:
            line += "; not checked: onnxruntime is not installed"
        return line


def require_exporter() -> None:
    """UserError naming the packages when onnx or onnxscript is missing."""
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    if missing:
        raise UserError(f"ONNX export needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                        f"not installed: {INSTALL_HINT}")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's warnings and log lines (e.g. 'torchvision is not installed') off for the call."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: "str | Path",
    *,
    strip: bool = False,
    dynamic_batch: bool = True,
    check: bool = True,
) -> ExportReport:
    """Export `model` (a copy of it, in eval mode) for inputs like `example` (N, ...) to `path`.

    strip: put the base activations back first (:func:`gaaf.strip`; the report says how much the
    output moved on `example`). dynamic_batch: the first dimension of input and output is free.
    check: run the file in onnxruntime (when installed) on `example` and on a batch of another size.
    The file is written atomically. Raises UserError when the exporter is missing or fails."""
    require_exporter()
    if not isinstance(example, torch.Tensor) or example.dim() < 1:
        raise ValueError("example must be a tensor with a batch dimension first")
    net = copy.deepcopy(model).cpu().eval()  # exported and checked on the CPU, where onnxruntime runs
    example = example.detach().cpu()
    stripped = None
    if strip:
        net, stripped = strip_gaaf(net, example)
    dims = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(net, (example,), dynamo=True, verbose=False, input_names=["input"],
                                        dynamic_shapes=dims)
        proto = program.model_proto
    except Exception as e:  # the exporter's own errors: unsupported ops, data-dependent control flow, ...
        text = " ".join(str(e).split())[:300] or type(e).__name__
        raise UserError(f"ONNX export of {type(model).__name__} failed: {text}") from None
    data = proto.SerializeToString()
    atomic_write_bytes(path, data)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    report = ExportReport(str(path), opset, len(data), dynamic_batch, stripped=stripped)
    if check:
        compare_in_onnxruntime(net, data, example, report)
    return report


def compare_in_onnxruntime(net: nn.Module, data: bytes, example: torch.Tensor, report: ExportReport) -> None:
    """Run the ONNX model `data` on `example` (and a batch of another size when the batch is dynamic)
    and record the largest |onnxruntime − torch| in `report` (nothing where onnxruntime is missing)."""
    if not _importable("onnxruntime"):
        report.runtime_missing = True
        return
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    batches = [example]
    if report.dynamic_batch:
        other = example.shape[0] + 1
        gen = torch.Generator().manual_seed(0)
        batches.append(torch.randn((other, *example.shape[1:]), generator=gen, dtype=example.dtype))
    diffs = []
    for x in batches:
        got = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            want = net(x)
        diffs.append(output_change(want, [torch.from_numpy(g) for g in got]))
    report.max_abs_diff = max(diffs)
    report.checked_batches = tuple(int(x.shape[0]) for x in batches)


__all__ = ["ExportReport", "INSTALL_HINT", "compare_in_onnxruntime", "export_onnx", "require_exporter"]
