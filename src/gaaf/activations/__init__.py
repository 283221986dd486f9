"""GAAF activations: the table of names (catalog, presets, spec: pure Python), the reference formulas,
the fused autograd op, the nn.Module and the registry.

The public names are imported on first use (PEP 562): importing a pure-Python submodule such as
``gaaf.activations.spec`` or ``gaaf.activations.presets`` (as :mod:`gaaf.keras` does) does not
load PyTorch. Without PyTorch installed the others raise ModuleNotFoundError
``gaaf.activations.GAAF needs PyTorch: pip install 'gaaf[torch]'``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule that defines it (None: the name is that submodule itself)
_PUBLIC: "dict[str, str | None]" = {
    "ACTIVATION_PARAMS": "spec",
    "GAAF": "modules",
    "GAAFSpec": "spec",
    "activation_params": "spec",
    "describe_activation": "describe",
    "fused": None,
    "functional": None,
    "get_activation": "registry",
    "list_activations": "registry",
    "reference": None,
    "register_activation": "registry",
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import fused, functional, reference
    from .describe import describe_activation
    from .modules import GAAF
    from .registry import get_activation, list_activations, register_activation
    from .spec import ACTIVATION_PARAMS, GAAFSpec, activation_params


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _PUBLIC[name]
    try:
        value = importlib.import_module(f".{module or name}", __name__)
    except ModuleNotFoundError as e:
        from ..errors import is_torch_missing, torch_missing

        if is_torch_missing(e):
            raise torch_missing(f"{__name__}.{name}") from None
        raise
    if module is not None:
        value = getattr(value, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
