"""A user's model factory as a gaaf model: ``gaaf train --model pkg.module:factory``.

    # mymodels.py, on PYTHONPATH
    def small_cnn(num_classes, in_shape):          # in_shape: (C, H, W)
        return nn.Sequential(nn.Conv2d(in_shape[0], 32, 3), nn.ReLU(), ...)

    build_model("mymodels:small_cnn", 10, (3, 32, 32), "gaaf_relu", {"shift": -1.0})

The factory is imported (``importlib.import_module("mymodels").small_cnn``), called as
``factory(num_classes=..., in_shape=(C, H, W))`` and must return an nn.Module. Then
:func:`gaaf.convert` makes every activation site of the model the run's activation with its
parameters: ``gaaf_relu`` with shift −1 above, or ``relu`` (the default) for a plain-ReLU baseline,
so ``--activation`` means for a factory what it means for gaaf's own models: what every activation
of the network is (a ReLU6 or LeakyReLU(0.2) too: the single target is an explicit mapping, so their
own parameters are not carried over, see :mod:`.convert`). The conversion must be complete: an activation gaaf cannot convert (no GAAF
base, a parameter GAAF's base lacks, a call in a forward that does not trace) is an error naming
it, as is a model with no activation at all: a run that claims GAAF runs GAAF everywhere.
The report is kept on the model as ``model.gaaf_conversion`` (``gaaf train`` prints its first line).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ..errors import UserError
from .convert import convert

#: separates the module from the attribute: "pkg.module:factory"
FACTORY_SEPARATOR = ":"


def is_factory_name(name: object) -> bool:
    """True for a ``pkg.module:factory`` model name (gaaf's own names have no colon)."""
    return isinstance(name, str) and FACTORY_SEPARATOR in name


def load_factory(name: str) -> Callable[..., Any]:
    """The callable ``pkg.module:factory`` names; UserError (one line) when it cannot be imported."""
    module_name, _, attr = name.strip().partition(FACTORY_SEPARATOR)
    if not module_name or not attr or FACTORY_SEPARATOR in attr:
        raise UserError(f"model {name!r}: a model factory is written pkg.module:factory (one colon)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"model {name!r}: cannot import module {module_name!r} ({e}); "
                        "is its folder on PYTHONPATH?") from None
    except Exception as e:  # the module itself raised while being imported
        raise UserError(f"model {name!r}: importing {module_name!r} failed: {_line(e)}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UserError(f"model {name!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"model {name!r}: {attr!r} is an object of type {type(target).__name__}, not a callable factory")
    return target


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def build_factory_model(
    name: str, num_classes: int, in_shape: Sequence[int], activation: Any, act_params: "Mapping[str, Any]",
) -> nn.Module:
    """The factory's model for `num_classes` and `in_shape`, every activation converted to `activation`
    (a registry name or factory) with `act_params`. ValueError/UserError say what went wrong, in one line."""
    factory = load_factory(name)
    try:
        model = factory(num_classes=num_classes, in_shape=tuple(in_shape))
    except Exception as e:  # anything the user's code raises becomes one line naming the factory
        raise ValueError(f"model factory {name!r} failed: {_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {name!r} returned an object of type {type(model).__name__}, not an nn.Module")
    model, report = convert(model, activation, **dict(act_params))
    if not report.ok:
        problems = report.problems()
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"model {name!r}: {report.unconverted_count()} activation(s) cannot become "
                         f"{activation!r}: {problems[0]}{more}")
    if report.already_gaaf:
        raise ValueError(f"model factory {name!r} built GAAF modules itself ({', '.join(report.already_gaaf[:3])}); "
                         "return the plain model and choose the activation with --activation")
    if not report.converted:
        raise ValueError(f"model {name!r} has no activation for {activation!r} to replace "
                         "(gaaf.convert found no ReLU, Tanh, GELU, ... module, function attribute or traced call)")
    model.gaaf_conversion = report
    return model


__all__ = ["FACTORY_SEPARATOR", "build_factory_model", "is_factory_name", "load_factory"]
