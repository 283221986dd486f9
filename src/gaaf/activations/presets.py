"""The built-in activation names and what each one means, shared by the PyTorch registry
(:mod:`.registry`) and the Keras layer (:mod:`gaaf.keras`). Pure Python (no PyTorch).

    resolve_activation("relu")                   # ("plain", "relu")
    resolve_activation("gaaf_relu", shift=-1.0)  # ("gaaf", {"base": "relu", "shape": "sigmoid", "shift": -1.0})
    resolve_activation("gaaf", base="tanh")      # ("gaaf", {"base": "tanh"})
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .catalog import BASES

#: Presets. gaaf_relu reproduces the seed's code (shift 4; its sweep found −1 best);
#: gaaf_tanh the seed's exp(−x²/3); gaaf_sigmoid uses the same Gaussian in sigmoid's own
#: coordinates: sigmoid(x) = (1 + tanh(x/2))/2, so exp(−(x/2)²/3) = exp(−x²/12), width 12.
#: The other relu-like bases follow gaaf_relu.
GAAF_PRESETS: "Mapping[str, Mapping[str, Any]]" = MappingProxyType({
    "gaaf_relu": MappingProxyType(dict(base="relu", shape="sigmoid", shift=4.0)),
    "gaaf_tanh": MappingProxyType(dict(base="tanh", shape="gaussian", width=3.0)),
    "gaaf_sigmoid": MappingProxyType(dict(base="sigmoid", shape="gaussian", width=12.0)),
    "gaaf_leaky_relu": MappingProxyType(dict(base="leaky_relu", shape="sigmoid", shift=4.0)),
    "gaaf_elu": MappingProxyType(dict(base="elu", shape="sigmoid", shift=4.0)),
    "gaaf_gelu": MappingProxyType(dict(base="gelu", shape="sigmoid", shift=4.0)),
    "gaaf_silu": MappingProxyType(dict(base="silu", shape="sigmoid", shift=4.0)),
    "gaaf_softplus": MappingProxyType(dict(base="softplus", shape="sigmoid", shift=4.0)),
})

#: The GAAF activation with every argument explicit: ``gaaf`` with base=..., shape=..., ...
GAAF_NAME = "gaaf"


def builtin_activations() -> list[str]:
    """Every built-in name, sorted: the plain bases, their ``gaaf_<base>`` presets and ``gaaf``."""
    return sorted([*BASES, *GAAF_PRESETS, GAAF_NAME])


def resolve_activation(name: str, **params: Any) -> "tuple[str, Any]":
    """What a built-in activation name with parameters stands for:

    * ``("plain", base)`` for a plain base activation (it takes no parameters);
    * ``("gaaf", kwargs)`` for ``gaaf`` and the presets: the keyword arguments of ``GAAF(**kwargs)``.
      A preset's own values give way to the parameters given; a new ``shape`` drops the preset's
      shape parameters (e.g. shape="none" has none).

    Names are case- and space-insensitive. Raises ValueError for an unknown name or a plain
    activation given parameters.
    """
    key = name.strip().lower()
    if key in BASES:
        if params:
            raise ValueError(
                f"activation {key!r} takes no parameters, got {', '.join(sorted(params))} "
                f"(did you mean 'gaaf_{key}'?)"
            )
        return "plain", key
    if key == GAAF_NAME:
        return "gaaf", dict(params)
    preset = GAAF_PRESETS.get(key)
    if preset is None:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(builtin_activations())}")
    merged = dict(preset)
    if "shape" in params and params["shape"] != preset["shape"]:
        merged = {"base": preset["base"]}
    merged.update(params)
    return "gaaf", merged


def is_gaaf_activation(name: str) -> bool:
    """True for the GAAF names: `gaaf` and every `gaaf_<base>` preset."""
    return name == GAAF_NAME or name.startswith("gaaf_")


__all__ = ["GAAF_NAME", "GAAF_PRESETS", "builtin_activations", "is_gaaf_activation", "resolve_activation"]
