"""gaaf — Gradient Acceleration in Activation Functions (Hahn & Choi, arXiv:1806.09783).

    import gaaf
    act = gaaf.get_activation("gaaf_relu", shift=-1.0)   # an nn.Module
    y = gaaf.functional.gaaf(x, "tanh", shape="gaussian", width=3.0)
    model, report = gaaf.convert(model)                 # GAAF in place of any model's activations
    model, report = gaaf.strip(model, example=x)        # the base activations back, for deployment
    gaaf.export_onnx(model, x, "model.onnx")            # ONNX, checked in onnxruntime

The public names are imported on first use (PEP 562), so ``import gaaf`` and ``gaaf --version``
do not load PyTorch until an activation is asked for, and ``import gaaf.keras`` works without
PyTorch installed (``pip install 'gaaf[keras]'``). Without it, asking for a PyTorch name raises
ModuleNotFoundError ``gaaf.GAAF needs PyTorch: pip install 'gaaf[torch]'``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "ConversionReport": "gaaf.models.convert_report",
    "GAAF": "gaaf.activations",
    "GAAFSpec": "gaaf.activations",
    "functional": "gaaf.activations",
    "get_activation": "gaaf.activations",
    "list_activations": "gaaf.activations",
    "register_activation": "gaaf.activations",
    "convert": "gaaf.models.convert",
    "export_onnx": "gaaf.models.onnx_export",
    "strip": "gaaf.models.strip",
}
__all__ = [*sorted(_PUBLIC), "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .activations import GAAF, GAAFSpec, functional, get_activation, list_activations, register_activation


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        try:
            value = getattr(importlib.import_module(_PUBLIC[name]), name)
        except ModuleNotFoundError as e:
            from .errors import is_torch_missing, torch_missing

            if is_torch_missing(e):
                raise torch_missing(f"gaaf.{name}") from None
            raise
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'gaaf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
