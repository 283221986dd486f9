"""What :func:`gaaf.convert` recognises as an activation, and with which parameters.

Three kinds of site, each described by a :class:`Source` (the base it computes, the parameters
that differ from GAAF's, whether it works in place):

* **module instances**: ``nn.ReLU``, ``nn.Tanh``, ``nn.Sigmoid``, ``nn.LeakyReLU``, ``nn.ELU``,
  ``nn.GELU``, ``nn.SiLU``, ``nn.Softplus`` (:data:`MODULE_BASES`);
* **function attributes**: a module holding an activation function as an attribute
  (``self.act = F.gelu``: transformers' ``GELUActivation``, ``nn.TransformerEncoderLayer``),
  also as a ``functools.partial``;
* **functional calls** in a forward that traces with torch.fx: ``F.relu``, ``torch.relu``,
  ``Tensor.relu``, ``torch.tanh``, ``F.gelu``, ... (:data:`FUNCTION_BASES`, :data:`METHOD_BASES`).

GAAF's bases have PyTorch's default parameters (:mod:`gaaf.activations.catalog`): leaky_relu's
negative_slope 0.01, elu's alpha 1, gelu's exact (erf) form, softplus' beta 1 and threshold 20.
A site with other values computes a different φ; :attr:`Source.params` names the differences.
Activations gaaf has no base for (ReLU6, Hardswish, Mish, ...) are recognised too, so that the
report can list them (:data:`UNSUPPORTED_MODULES`, :data:`UNSUPPORTED_FUNCTIONS`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: GAAF's value of every parameter a torch activation of that base takes (inplace aside).
BASE_PARAM_DEFAULTS: "dict[str, dict[str, Any]]" = {
    "leaky_relu": {"negative_slope": 0.01},
    "elu": {"alpha": 1.0},
    "gelu": {"approximate": "none"},
    "softplus": {"beta": 1.0, "threshold": 20.0},
}

#: module class → (base, the attributes holding its parameters)
MODULE_BASES: "dict[type[nn.Module], tuple[str, tuple[str, ...]]]" = {
    nn.ReLU: ("relu", ()),
    nn.Tanh: ("tanh", ()),
    nn.Sigmoid: ("sigmoid", ()),
    nn.LeakyReLU: ("leaky_relu", ("negative_slope",)),
    nn.ELU: ("elu", ("alpha",)),
    nn.GELU: ("gelu", ("approximate",)),
    nn.SiLU: ("silu", ()),
    nn.Softplus: ("softplus", ("beta", "threshold")),
}

#: elementwise activation modules gaaf has no base for (listed as not converted unless mapped)
UNSUPPORTED_MODULES: "tuple[type[nn.Module], ...]" = (
    nn.ReLU6, nn.PReLU, nn.RReLU, nn.SELU, nn.CELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh,
    nn.Softsign, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold, nn.LogSigmoid, nn.GLU,
)


@dataclass(frozen=True)
class FunctionInfo:
    """A functional activation: its base, its parameters after the input (in positional order),
    whether it always works in place (``relu_``), and how it is written in the report."""

    base: "str | None"
    params: "tuple[str, ...]" = ()
    inplace: bool = False
    text: str = ""


def _fn(base: "str | None", text: str, params: Sequence[str] = (), inplace: bool = False) -> FunctionInfo:
    return FunctionInfo(base, tuple(params), inplace, text)


#: function object → what it computes. The parameter "inplace" is read but not carried over.
FUNCTION_BASES: "dict[Callable[..., Any], FunctionInfo]" = {
    F.relu: _fn("relu", "F.relu", ["inplace"]),
    F.relu_: _fn("relu", "F.relu_", inplace=True),
    torch.relu: _fn("relu", "torch.relu"),
    torch.relu_: _fn("relu", "torch.relu_", inplace=True),
    torch.tanh: _fn("tanh", "torch.tanh"),
    F.tanh: _fn("tanh", "F.tanh"),
    torch.tanh_: _fn("tanh", "torch.tanh_", inplace=True),
    torch.sigmoid: _fn("sigmoid", "torch.sigmoid"),
    F.sigmoid: _fn("sigmoid", "F.sigmoid"),
    torch.sigmoid_: _fn("sigmoid", "torch.sigmoid_", inplace=True),
    torch.special.expit: _fn("sigmoid", "torch.special.expit"),
    F.gelu: _fn("gelu", "F.gelu", ["approximate"]),
    F.silu: _fn("silu", "F.silu", ["inplace"]),
    F.elu: _fn("elu", "F.elu", ["alpha", "inplace"]),
    F.elu_: _fn("elu", "F.elu_", ["alpha"], inplace=True),
    F.leaky_relu: _fn("leaky_relu", "F.leaky_relu", ["negative_slope", "inplace"]),
    F.leaky_relu_: _fn("leaky_relu", "F.leaky_relu_", ["negative_slope"], inplace=True),
    F.softplus: _fn("softplus", "F.softplus", ["beta", "threshold"]),
}

#: Tensor method name → what it computes (``x.relu()``, ``x.sigmoid_()``)
METHOD_BASES: "dict[str, FunctionInfo]" = {
    "relu": _fn("relu", "Tensor.relu"), "relu_": _fn("relu", "Tensor.relu_", inplace=True),
    "tanh": _fn("tanh", "Tensor.tanh"), "tanh_": _fn("tanh", "Tensor.tanh_", inplace=True),
    "sigmoid": _fn("sigmoid", "Tensor.sigmoid"), "sigmoid_": _fn("sigmoid", "Tensor.sigmoid_", inplace=True),
}

#: functional activations gaaf has no base for
UNSUPPORTED_FUNCTIONS: "dict[Callable[..., Any], FunctionInfo]" = {
    f: _fn(None, text) for f, text in (
        (F.relu6, "F.relu6"), (F.hardtanh, "F.hardtanh"), (F.mish, "F.mish"), (F.hardswish, "F.hardswish"),
        (F.selu, "F.selu"), (torch.selu, "torch.selu"), (F.celu, "F.celu"), (torch.celu, "torch.celu"),
        (F.logsigmoid, "F.logsigmoid"), (F.softsign, "F.softsign"), (F.hardsigmoid, "F.hardsigmoid"),
        (F.rrelu, "F.rrelu"), (F.prelu, "F.prelu"), (F.glu, "F.glu"), (F.tanhshrink, "F.tanhshrink"),
        (F.softshrink, "F.softshrink"), (F.hardshrink, "F.hardshrink"), (F.threshold, "F.threshold"),
    )
}

#: every name a functional activation call can have in source code (for forwards that do not trace)
CALL_NAMES: "frozenset[str]" = frozenset(
    [getattr(f, "__name__", "") for f in (*FUNCTION_BASES, *UNSUPPORTED_FUNCTIONS)] + list(METHOD_BASES)
    + ["expit", "relu6", "mish", "hardswish", "selu", "celu", "logsigmoid", "softsign", "hardsigmoid"]
) - {"special_expit", ""}


@dataclass(frozen=True)
class Source:
    """One activation site as found: what it computes and how the report writes it."""

    base: "str | None"                                     # GAAF base; None where gaaf has none
    text: str                                              # "ReLU(inplace=True)", "F.gelu(approximate='tanh')"
    differs: "Mapping[str, Any]" = field(default_factory=dict)  # parameters unlike GAAF's base
    inplace: bool = False
    unknown: "tuple[str, ...]" = ()                        # parameters only known at run time


def _differs(base: "str | None", values: Mapping[str, Any]) -> dict[str, Any]:
    defaults = BASE_PARAM_DEFAULTS.get(base or "", {})
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}


def _args_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def module_source(module: nn.Module) -> "Source | None":
    """The Source of an activation module instance, None for any other module. Subclasses count only
    where they keep the torch class's forward (a subclass computing something else is not recognised)."""
    for cls, (base, names) in MODULE_BASES.items():
        if isinstance(module, cls) and type(module).forward is cls.forward:
            values = {n: getattr(module, n) for n in names}
            inplace = bool(getattr(module, "inplace", False))
            shown = {**values, **({"inplace": True} if inplace else {})}
            return Source(base, f"{type(module).__name__}({_args_text(shown)})", _differs(base, values), inplace)
    if isinstance(module, UNSUPPORTED_MODULES):
        return Source(None, f"{type(module).__name__}({module.extra_repr()})")
    return None


def function_info(fn: Any) -> "FunctionInfo | None":
    """What a function object computes, for the known activation functions (None otherwise)."""
    try:
        return FUNCTION_BASES.get(fn) or UNSUPPORTED_FUNCTIONS.get(fn)
    except TypeError:  # an unhashable callable
        return None


def call_source(info: FunctionInfo, args: Sequence[Any], kwargs: Mapping[str, Any],
                is_runtime: Callable[[Any], bool] = lambda v: False) -> Source:
    """The Source of a call ``fn(x, *args, **kwargs)`` (args after the input). Values for which
    `is_runtime` is true (fx nodes) are only known at run time: listed in :attr:`Source.unknown`."""
    values = dict(zip(info.params, args))
    values.update({k: v for k, v in kwargs.items() if k in info.params})
    unknown = tuple(k for k, v in values.items() if is_runtime(v))
    known = {k: v for k, v in values.items() if k not in unknown}
    inplace = info.inplace or bool(known.get("inplace", False))
    shown = {k: v for k, v in known.items() if k != "inplace" or v}
    text = f"{info.text}({_args_text(shown)})" if shown else info.text
    return Source(info.base, text, _differs(info.base, known), inplace, unknown)


def attribute_source(value: Any) -> "Source | None":
    """The Source of a module attribute holding an activation function (or a partial of one)."""
    if isinstance(value, functools.partial):
        info = function_info(value.func)
        return None if info is None else call_source(info, value.args[1:] if value.args else (), value.keywords)
    info = function_info(value)
    return None if info is None else call_source(info, (), {})


__all__ = [
    "BASE_PARAM_DEFAULTS", "CALL_NAMES", "FUNCTION_BASES", "METHOD_BASES", "MODULE_BASES", "UNSUPPORTED_FUNCTIONS",
    "UNSUPPORTED_MODULES", "FunctionInfo", "Source", "attribute_source", "call_source", "function_info",
    "module_source",
]
