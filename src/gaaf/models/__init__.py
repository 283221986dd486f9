"""Models for GAAF experiments: the Keras CIFAR ResNets (v1, v2) and an MNIST-style MLP.

    from gaaf.models import build_model, activation_sites, count_parameters
    net = build_model("resnet20_v1", 10, (3, 32, 32), "gaaf_relu", {"shift": -1.0})
    count_parameters(net)        # 273066
    len(activation_sites(net))   # 19: stem + 2 per block, all GAAF

Names: ``resnet{depth}_v1`` (depth 6n+2), ``resnet{depth}_v2`` (depth 9n+2), ``mlp``, or a user's
factory ``pkg.module:factory`` (:mod:`.factory`), whose activations :func:`gaaf.convert` replaces.
"""
from __future__ import annotations

from ..errors import require_torch

require_torch(__name__)  # before anything imports torch: one line that names the fix

import math
import operator
import re
from typing import Any, Sequence

from torch import nn

from ._sites import ActivationArg, activation_sites, count_parameters
from .factory import build_factory_model, is_factory_name
from .keras_bn import KerasBatchNorm2d
from .mlp import MLP, mlp
from .resnet import SHORTCUTS, ResNet, ZeroPadShortcut, check_depth, resnet_v1, resnet_v2

__all__ = [
    "KerasBatchNorm2d", "MLP", "ResNet", "SHORTCUTS", "ZeroPadShortcut", "activation_sites", "build_model",
    "count_parameters", "list_models", "mlp", "resnet_v1", "resnet_v2",
]

_RESNET_NAME = re.compile(r"resnet(\d+)_v(\d+)")
_PATTERNS = ("resnet{6n+2}_v1", "resnet{9n+2}_v2", "mlp", "pkg.module:factory")
_EXAMPLES = (
    "resnet20_v1", "resnet32_v1", "resnet44_v1", "resnet56_v1", "resnet110_v1",
    "resnet20_v2", "resnet56_v2", "resnet110_v2", "resnet164_v2", "mlp",
)


def list_models() -> list[str]:
    """Example model names (any depth that fits a pattern of :func:`build_model` is accepted)."""
    return list(_EXAMPLES)


def build_model(
    name: str,
    num_classes: int,
    in_shape: Sequence[int],
    activation: ActivationArg = "relu",
    act_params: "dict[str, Any] | None" = None,
    *,
    stem_activation: "ActivationArg | None" = None,
    batch_norm: bool = True,
    keras2_batch_norm: bool = False,
    seed_v2_bug: bool = False,
    shortcut: str = "B",
    hidden: "Sequence[int] | None" = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Build a model by name for inputs of shape `in_shape` = (C, H, W).

    Args:
        name: "resnet{depth}_v1" (depth 6n+2), "resnet{depth}_v2" (depth 9n+2), "mlp", or a user's
            factory "pkg.module:factory" (:func:`gaaf.models.factory.build_factory_model`).
        num_classes: output width (logits).
        in_shape: (C, H, W) of one input; a ResNet needs H, W ≥ 29 (pad MNIST to 32).
        activation, act_params: the activation at every site (registry name or class/factory).
        stem_activation: ResNets only; None = `activation`, "relu" = the seed's v1 stem.
        batch_norm: ResNets only; False builds the nets without BatchNorm (the MLP has none).
        keras2_batch_norm: ResNets with batch_norm only: Keras 2.2 / TF 1.x zero-debiased moving
            statistics (`KerasBatchNorm2d`, the seed's), else PyTorch's BatchNorm2d. Ignored by the MLP.
        seed_v2_bug: ResNet v2 only: the seed's v2 as it ran, no activation before the first 1×1 conv
            of every block after the first and a linear head (see :mod:`gaaf.models.resnet`).
        shortcut: "B" (1×1 projection, Keras') or, v1 ResNets only, "A" (zero padding, He et al.'s).
        hidden, dropout: MLP only; hidden defaults to (512, 512).
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {name!r}")
    key = name.strip().lower()
    shape = _check_shape(in_shape)
    params = dict(act_params or {})
    if is_factory_name(name):
        _check_factory_options(name, stem_activation=stem_activation, no_batch_norm=not batch_norm,
                               keras2_batch_norm=keras2_batch_norm, seed_v2_bug=seed_v2_bug,
                               shortcut=None if shortcut == "B" else shortcut, hidden=hidden, dropout=dropout)
        return build_factory_model(name, num_classes, shape, activation, params)

    if key == "mlp":
        _no_seed_v2_bug(seed_v2_bug, name)
        _no_resnet_options(stem_activation, shortcut)
        widths = (512, 512) if hidden is None else hidden
        return mlp(math.prod(shape), num_classes, widths, activation, dropout, **params)

    version, depth = _resnet_name(name, key)
    if hidden is not None or dropout:
        raise ValueError(f"hidden and dropout apply to 'mlp' only, not {name!r}")
    common: dict[str, Any] = dict(
        stem_activation=stem_activation, in_channels=shape[0], batch_norm=batch_norm,
        keras2_batch_norm=keras2_batch_norm, shortcut=shortcut, input_size=(shape[1], shape[2]),
    )
    if version == 1:
        _no_seed_v2_bug(seed_v2_bug, name)
        return resnet_v1(depth, num_classes, activation, **common, **params)
    return resnet_v2(depth, num_classes, activation, **common, seed_v2_bug=seed_v2_bug, **params)


def _resnet_name(name: str, key: str) -> "tuple[int, int]":
    """(version, depth) of a valid ResNet name, else ValueError saying what names are allowed."""
    match = _RESNET_NAME.fullmatch(key)
    if match is None:
        raise ValueError(
            f"unknown model {name!r}; names follow the patterns {', '.join(_PATTERNS)} "
            f"(e.g. {', '.join(_EXAMPLES)})"
        )
    depth, version = int(match.group(1)), int(match.group(2))
    if version not in (1, 2):
        raise ValueError(f"unknown ResNet version in {name!r}; choose v1 (depth 6n+2) or v2 (depth 9n+2)")
    check_depth(version, depth)
    return version, depth


def _no_resnet_options(stem_activation: "ActivationArg | None", shortcut: str) -> None:
    """The MLP has no stem and no shortcuts: either option set is an error."""
    if stem_activation is not None:
        raise ValueError("stem_activation applies to ResNets only; 'mlp' has no stem")
    if shortcut != "B":
        raise ValueError(f"shortcut {shortcut!r} applies to resnet*_v1 only; 'mlp' has no shortcuts")


def _no_seed_v2_bug(seed_v2_bug: bool, name: str) -> None:
    if seed_v2_bug:
        raise ValueError(f"seed_v2_bug applies to ResNet v2 models only (resnet{{9n+2}}_v2), not {name!r}")


def _check_factory_options(name: str, **options: Any) -> None:
    """The options of gaaf's own models are an error with a factory (its code decides those)."""
    given = [k for k, v in options.items() if v not in (None, False, 0, 0.0)]
    if given:
        raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to gaaf's own models "
                         f"(resnet*, mlp), not to the model factory {name!r}")


def _check_shape(in_shape: Sequence[int]) -> "tuple[int, int, int]":
    try:
        shape = tuple(operator.index(d) for d in in_shape if not isinstance(d, bool))
    except TypeError:
        shape = ()
    if len(shape) != 3 or len(tuple(in_shape)) != 3 or min(shape) < 1:
        raise ValueError(f"in_shape must be (C, H, W) with positive integers, got {in_shape!r}")
    return shape  # type: ignore[return-value]
