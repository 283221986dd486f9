"""The built-in activation names and what each one means, shared by the PyTorch registry
(:mod:`.registry`) and the Keras layer (:mod:`gaaf.keras`). Pure Python (no PyTorch).

    resolve_activation("relu")                   # ("plain", "relu")
    resolve_activation("gaaf_relu", shift=-1.0)  # ("gaaf", {"base": "relu", "shift": -1.0})
    resolve_activation("gaaf", base="tanh")      # ("gaaf", {"base": "tanh"})

A preset ``gaaf_<base>`` is GAAF on that base with the base's own defaults
(:data:`gaaf.activations.catalog.BASE_DEFAULTS`), exactly what ``GAAF(base)`` builds.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .catalog import BASE_DEFAULTS, BASES, PRESET_PREFIX, base_of

#: The presets spelled out: name → GAAF arguments (derived from BASE_DEFAULTS, for reading only).
GAAF_PRESETS: "Mapping[str, Mapping[str, Any]]" = MappingProxyType({
    PRESET_PREFIX + base: MappingProxyType({"base": base, "shape": shape, **own})
    for base, (shape, own) in BASE_DEFAULTS.items()
})

#: The GAAF activation with every argument explicit: ``gaaf`` with base=..., shape=..., ...
GAAF_NAME = "gaaf"


def builtin_activations() -> list[str]:
    """Every built-in name, sorted: the plain bases, their ``gaaf_<base>`` presets and ``gaaf``."""
    return sorted([*BASES, *GAAF_PRESETS, GAAF_NAME])


def resolve_activation(name: str, **params: Any) -> "tuple[str, Any]":
    """What a built-in activation name with parameters stands for:

    * ``("plain", base)`` for a plain base activation (it takes no parameters);
    * ``("gaaf", kwargs)`` for ``gaaf`` and the presets: the keyword arguments of ``GAAF(**kwargs)``
      (a preset fixes the base; the defaults of everything else are GAAF's own for that base).

    Names are case- and space-insensitive. Raises ValueError for an unknown name, a plain
    activation given parameters, or a preset given another base.
    """
    key = name.strip().lower()
    if key in BASES:
        if params:
            raise ValueError(f"{key!r} takes no parameters, got {', '.join(sorted(params))} "
                             f"(did you mean '{PRESET_PREFIX}{key}'?)")
        return "plain", key
    if key == GAAF_NAME:
        return "gaaf", dict(params)
    if key not in GAAF_PRESETS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(builtin_activations())}")
    base = GAAF_PRESETS[key]["base"]
    if "base" in params and base_of(params["base"]) != base:
        raise ValueError(f"{key!r} is GAAF on {base!r}, got base={params['base']!r} "
                         f"(use '{GAAF_NAME}' with base=..., or '{PRESET_PREFIX}<base>')")
    return "gaaf", {**params, "base": base}


def is_gaaf_activation(name: str) -> bool:
    """True for the GAAF names: `gaaf` and every `gaaf_<base>` preset."""
    return name == GAAF_NAME or name.startswith(PRESET_PREFIX)


__all__ = ["GAAF_NAME", "GAAF_PRESETS", "builtin_activations", "is_gaaf_activation", "resolve_activation"]
