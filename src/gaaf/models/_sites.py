"""Activation sites: building one fresh activation module per site, and finding them again.

Every activation a model builder creates goes through :func:`site_factory`, which tags the module
(``module._gaaf_activation_site = True``). :func:`activation_sites` walks ``named_modules()`` (the
builders register modules in forward order) and returns the tagged ones, so probes and tests see
exactly the sites the architecture defines: not the Identity placeholders, not modules inside a
custom activation.
"""
from __future__ import annotations

from typing import Any, Callable, Union

from torch import nn

from ..activations import GAAF, get_activation
from ..activations.registry import PLAIN_ACTIVATIONS

#: A name from the activation registry, or a class / factory returning a fresh nn.Module.
ActivationArg = Union[str, Callable[..., nn.Module]]
SiteFactory = Callable[[], nn.Module]

_TAG = "_gaaf_activation_site"


def site_factory(
    activation: ActivationArg, act_params: "dict[str, Any] | None" = None, *, what: str = "activation"
) -> SiteFactory:
    """A zero-argument callable that builds a fresh, tagged activation module on each call.

    `activation` is a registry name (``gaaf.get_activation(name, **act_params)``) or a module class
    / factory called with ``**act_params``. A module *instance* is refused: one instance placed at
    every site would be a single shared module (and would be counted once by named_modules()).
    The first module is built here, so a bad name or parameter fails at construction time.
    """
    if isinstance(activation, nn.Module):
        raise ValueError(
            f"{what} must be a registry name or a module class/factory, not the instance {activation!r} "
            "(each activation site needs its own module)"
        )
    if activation is None:
        raise ValueError(f"{what} must be a registry name or a module class/factory, got None")
    params = dict(act_params or {})
    seen: set[int] = set()

    def make() -> nn.Module:
        module = get_activation(activation, **params)
        if id(module) in seen:
            raise ValueError(
                f"{what} factory {activation!r} returned the same module twice; it must build a new one per call"
            )
        seen.add(id(module))
        setattr(module, _TAG, True)
        return module

    first = make()
    pending = [first]

    def factory() -> nn.Module:
        # hand out the module built for validation first, then fresh ones
        return pending.pop() if pending else make()

    return factory


def activation_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(qualified_name, module), ...]`` for every activation site of a gaaf model, in forward order.

    Works on a ``torch.compile``-d model too (names then start with ``_orig_mod.``). For a model not
    built by :mod:`gaaf.models` (no tagged modules) it falls back to modules whose class is a known
    activation: the registry's plain activations and GAAF.
    """
    tagged = [(name, m) for name, m in model.named_modules() if getattr(m, _TAG, False)]
    if tagged:
        return tagged
    known = _known_activation_types()
    return [(name, m) for name, m in model.named_modules() if isinstance(m, known)]


def _known_activation_types() -> tuple[type, ...]:
    return (GAAF, *PLAIN_ACTIVATIONS.values())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (``requires_grad``), what Keras reports as "Trainable params".

    BatchNorm running statistics are buffers, so they are not counted (Keras lists them as
    non-trainable). Shared parameters are counted once.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
