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

from .modules import GAAF
from .reference import BASES

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

#: Presets. gaaf_relu reproduces the seed's code (shift 4; its sweep found −1 best);
#: gaaf_tanh the seed's exp(−x²/3); gaaf_sigmoid uses the same Gaussian in sigmoid's own
#: coordinates: sigmoid(x) = (1 + tanh(x/2))/2, so exp(−(x/2)²/3) = exp(−x²/12), width 12.
#: The other relu-like bases follow gaaf_relu.
GAAF_PRESETS: "Mapping[str, Mapping[str, Any]]" = MappingProxyType({
    "gaaf_relu": dict(base="relu", shape="sigmoid", shift=4.0),
    "gaaf_tanh": dict(base="tanh", shape="gaussian", width=3.0),
    "gaaf_sigmoid": dict(base="sigmoid", shape="gaussian", width=12.0),
    "gaaf_leaky_relu": dict(base="leaky_relu", shape="sigmoid", shift=4.0),
    "gaaf_elu": dict(base="elu", shape="sigmoid", shift=4.0),
    "gaaf_gelu": dict(base="gelu", shape="sigmoid", shift=4.0),
    "gaaf_silu": dict(base="silu", shape="sigmoid", shift=4.0),
    "gaaf_softplus": dict(base="softplus", shape="sigmoid", shift=4.0),
})
assert set(PLAIN_ACTIVATIONS) == set(BASES)

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


def _gaaf_preset(defaults: Mapping[str, Any]) -> ActivationFactory:
    def factory(**params: Any) -> nn.Module:
        merged = dict(defaults)
        if "shape" in params and params["shape"] != defaults["shape"]:
            # a new shape drops the preset's shape parameters (e.g. shape="none" has none)
            merged = {k: merged[k] for k in ("base",)}
        merged.update(params)
        return GAAF(**merged)

    return factory


def _plain(cls: type[nn.Module], name: str) -> ActivationFactory:
    def factory(**params: Any) -> nn.Module:
        if params:
            raise ValueError(
                f"activation {name!r} takes no parameters, got {', '.join(sorted(params))} "
                f"(did you mean 'gaaf_{name}'?)"
            )
        return cls()

    return factory


for _name, _cls in PLAIN_ACTIVATIONS.items():
    register_activation(_name, _plain(_cls, _name))
for _name, _defaults in GAAF_PRESETS.items():
    register_activation(_name, _gaaf_preset(_defaults))
register_activation("gaaf", lambda **params: GAAF(**params))


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


def is_gaaf_activation(name: str) -> bool:
    """True for the registry's GAAF names: `gaaf` and every `gaaf_<base>` preset."""
    return name == "gaaf" or name.startswith("gaaf_")
