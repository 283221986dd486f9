"""Name → activation-layer registry (timm's create_act pattern).

    get_activation("relu")                                   # nn.ReLU()
    get_activation("gaaf_relu", shift=-1.0)                  # GAAF(base='relu', shape='sigmoid', shift=-1.0, ...)
    get_activation("gaaf_relu", shift=-1.0, variant="round")
    get_activation("gaaf_relu", shape="none")                # the seed's "no s(x)" row
    register_activation("my_act", lambda **p: MyAct(**p))
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping

from torch import nn

from .catalog import BASES, check_names
from .modules import GAAF
from .presets import GAAF_PRESETS, builtin_activations, is_gaaf_activation, resolve_activation

ActivationFactory = Callable[..., nn.Module]

#: The plain activations: registry name → torch module class (one per GAAF base).
PLAIN_ACTIVATIONS: "Mapping[str, type[nn.Module]]" = MappingProxyType({
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
})
check_names(PLAIN_ACTIVATIONS, BASES, "registry.PLAIN_ACTIVATIONS")

_REGISTRY: dict[str, ActivationFactory] = {}


def register_activation(name: str, factory: ActivationFactory, *, overwrite: bool = False) -> None:
    """Register `factory(**params) -> nn.Module` under `name`. A duplicate name raises ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"activation name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"activation factory for {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def list_activations() -> list[str]:
    """All registered names, sorted."""
    return sorted(_REGISTRY)


def _builtin(name: str) -> ActivationFactory:
    """The factory of a built-in name: what :func:`.presets.resolve_activation` says it means."""
    def factory(**params: Any) -> nn.Module:
        kind, value = resolve_activation(name, **params)
        return PLAIN_ACTIVATIONS[value]() if kind == "plain" else GAAF(**value)

    return factory


for _name in builtin_activations():
    register_activation(_name, _builtin(_name))


def get_activation(name: "str | ActivationFactory | nn.Module | None", **params: Any) -> nn.Module:
    """A fresh activation layer from a registry name, a module class / factory, or None (Identity).

    Unknown names raise ValueError listing the valid ones.
    """
    if name is None:
        return nn.Identity()
    if isinstance(name, nn.Module):
        if params:
            raise ValueError("parameters cannot be applied to an activation module instance; pass its class or a name")
        return name
    if isinstance(name, str):
        key = name.strip().lower()
        if key not in _REGISTRY:
            raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(list_activations())}")
        return _REGISTRY[key](**params)
    if callable(name):
        module = name(**params)
        if not isinstance(module, nn.Module):
            raise ValueError(f"activation factory {name!r} returned {type(module).__name__}, not an nn.Module")
        return module
    raise ValueError(f"activation must be a name, an nn.Module class or factory, or None; got {name!r}")


__all__ = [
    "GAAF_PRESETS", "PLAIN_ACTIVATIONS", "get_activation", "is_gaaf_activation", "list_activations",
    "register_activation",
]
