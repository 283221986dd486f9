"""The checks behind `gaaf.train.config.check_config`, over a flat dict of config values.

Three stages, each returning a list of problems (one short sentence each; empty = fine):

    coerce(hints, values)       types: JSON/TOML/argparse values → each field's annotated type
    value_problems(values)      ranges and choices (epochs >= 1, optimizer in OPTIMIZERS, ...)
    activation_problems(values) names against the live registries; data_problems(values) likewise

The model itself (a build on the meta device) is checked by `config.check_config`, which owns
the dataclass; this module knows field names and types only, not `TrainConfig`.
"""
from __future__ import annotations

import math
import typing
from typing import Any, Mapping

from ..activations import activation_params, get_activation, list_activations
from ..data import DATASETS, NORMALIZATIONS, make_augment
from ..errors import UserError
from .schedule import UNITS

OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")

#: scalar field types → (what a single value must be, what a list of them must be)
_SCALARS: dict[type, tuple[str, str]] = {
    bool: ("true or false", "a list of true/false values"),
    int: ("an integer", "a list of integers"),
    float: ("a number", "a list of numbers"),
    str: ("a string", "a list of strings"),
}


# ---------------------------------------------------------------------- types
def coerce(hints: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every value converted to its field's type (`hints`: name → annotation), and the problems.

    A value that cannot be converted is kept as is and named in a problem."""
    problems: list[str] = []
    return {k: coerce_value(k, hints[k], v, problems) for k, v in values.items()}, problems


def coerce_value(name: str, hint: Any, value: Any, problems: list[str]) -> Any:
    """Convert a JSON/TOML/argparse value to the type `hint`, or append a problem and return it as is."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        problems.append(f"{name} must not be empty (null)")
        return value
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    try:
        if base in _SCALARS:
            return _coerce_scalar(base, value, _SCALARS[base][0])
        if typing.get_origin(base) is list:
            return _coerce_list(name, typing.get_args(base)[0], value)
    except TypeError as e:
        problems.append(f"{name} must be {e}, got {value!r}")
    return value


# ---------------------------------------------------------------------- list options
#: list fields → (what the list holds, the list form, the same as one string): what error messages show
LIST_FORMS: dict[str, tuple[str, str, str]] = {
    "hidden": ("a list of integers", "[512, 512]", '"512,512"'),
    "augment": ("a list of names", '["crop", "flip"]', '"crop,flip"'),
    "adam_betas": ("a list of two numbers", "[0.9, 0.999]", '"0.9,0.999"'),
    "lr_schedule": ("a list of [epoch, factor] pairs", "[[81, 0.1], [121, 0.01]]", '"81:0.1,121:0.01"'),
}


def list_forms(name: str) -> str:
    """`a list of integers like [512, 512] or "512,512"`: the forms list option `name` accepts."""
    what, as_list, as_text = LIST_FORMS.get(name, ("a list", "[...]", '"a,b"'))
    return f"{what} like {as_list} or {as_text}"


def _coerce_list(name: str, inner: Any, value: Any) -> list[Any]:
    """A list option from a list (JSON/TOML) or from one string, as `--flag` takes it: items
    separated by commas, an [epoch, factor] pair written `epoch:factor`. "" and "none" are the
    empty list (no augmentation, a constant learning rate). TypeError naming both forms otherwise."""
    try:
        items = split_list_text(inner, value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise TypeError
        return [_coerce_item(inner, v) for v in items]
    except (TypeError, ValueError):
        raise TypeError(list_forms(name)) from None


def split_list_text(inner: Any, text: str) -> list[Any]:
    """'512,512' → [512, 512]; '0.9,0.999' → [0.9, 0.999]; 'crop, flip' → ['crop', 'flip'];
    '81:0.1,121:0.01' → [[81.0, 0.1], [121.0, 0.01]]; '' or 'none' → []. Spaces around items and
    empty items ('crop,') are ignored. ValueError when an item is not what the list holds."""
    if text.strip().lower() in ("", "none"):
        return []
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if typing.get_origin(inner) is list:  # [[epoch, factor], ...] written epoch:factor
        pairs = [part.split(":") for part in parts]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"expected epoch:factor steps, got {text!r}")
        return [[float(a), float(b)] for a, b in pairs]
    if inner is int:
        return [int(t) for t in parts]
    if inner is float:
        return [float(t) for t in parts]
    return parts


def _coerce_scalar(kind: type, v: Any, what: str) -> Any:
    """`v` as `kind` (an integral float counts as an int; a bool is never a number), else TypeError(what)."""
    if kind is bool:
        ok = isinstance(v, bool)
    elif kind is int:
        ok = not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
    elif kind is float:
        ok = not isinstance(v, bool) and isinstance(v, (int, float))
    else:
        ok = isinstance(v, str)
    if not ok:
        raise TypeError(what)
    return kind(v)


def _coerce_item(inner: Any, v: Any) -> Any:
    if inner in _SCALARS:
        return _coerce_scalar(inner, v, _SCALARS[inner][1])
    if typing.get_origin(inner) is list:  # lr_schedule: list[list[float]]
        if not isinstance(v, (list, tuple)):
            raise TypeError("a list of [epoch, factor] pairs")
        return [_coerce_item(typing.get_args(inner)[0], x) for x in v]
    return v


# ---------------------------------------------------------------------- ranges and choices
def _finite_pos(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def value_problems(v: Mapping[str, Any]) -> list[str]:  # noqa: C901 - a flat list of checks reads best
    """Ranges and fixed choices of the coerced `values` (every field present, types already right)."""
    p: list[str] = []
    if v["epochs"] < 1:
        p.append(f"epochs must be >= 1, got {v['epochs']}")
    if v["batch_size"] < 1:
        p.append(f"batch_size must be >= 1, got {v['batch_size']}")
    if not _finite_pos(v["lr"]):
        p.append(f"lr must be a finite number > 0, got {v['lr']}")
    if v["optimizer"] not in OPTIMIZERS:
        p.append(f"unknown optimizer {v['optimizer']!r}; choose one of: {', '.join(OPTIMIZERS)}")
    if not (math.isfinite(v["momentum"]) and 0 <= v["momentum"] < 1):
        p.append(f"momentum must be in [0, 1), got {v['momentum']}")
    betas = v["adam_betas"]
    if len(betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in betas):
        p.append(f"adam_betas must be two numbers in [0, 1), got {betas}")
    if not _finite_pos(v["adam_eps"]):
        p.append(f"adam_eps must be a finite number > 0, got {v['adam_eps']}")
    for name in ("weight_decay", "l2", "clip_grad_norm"):
        if not (math.isfinite(v[name]) and v[name] >= 0):
            p.append(f"{name} must be a finite number >= 0, got {v[name]}")
    p += _schedule_problems(v["lr_schedule"])
    if v["precise_bn"] < 0:
        p.append(f"precise_bn must be >= 0 (training images for the BatchNorm statistics; 0 = off), got {v['precise_bn']}")
    if v["lr_schedule_unit"] not in UNITS:
        p.append(f"unknown lr_schedule_unit {v['lr_schedule_unit']!r}; choose one of: {', '.join(UNITS)}")
    if v["warmup_iterations"] < 0:
        p.append(f"warmup_iterations must be >= 0 (0: no warm-up), got {v['warmup_iterations']}")
    if v["max_iterations"] < 0:
        p.append(f"max_iterations must be >= 0 (0: no limit, the epochs decide), got {v['max_iterations']}")
    if v["probe_every"] < 1:
        p.append(f"probe_every must be >= 1 (sample one training batch in N), got {v['probe_every']}")
    if v["seed"] < 0:
        p.append(f"seed must be >= 0, got {v['seed']}")
    if v["device"] not in DEVICES:
        p.append(f"unknown device {v['device']!r}; choose one of: {', '.join(DEVICES)}")
    for name in ("limit_train", "limit_test"):
        if v[name] is not None and v[name] < 1:
            p.append(f"{name} must be >= 1 (or unset for all images), got {v[name]}")
    if not (math.isfinite(v["dropout"]) and 0 <= v["dropout"] < 1):
        p.append(f"dropout must be in [0, 1), got {v['dropout']}")
    hidden = v["hidden"]
    if hidden is not None and (not hidden or any(h < 1 for h in hidden)):
        p.append(f"hidden must be a non-empty list of sizes >= 1, got {hidden}")
    if v["out"] is not None and not v["out"].strip():
        p.append("out must be a folder path, got an empty string")
    return p


def _schedule_problems(schedule: list[list[float]]) -> list[str]:
    """lr_schedule: [milestone >= 0, factor > 0] steps with milestones increasing (the first problem only)."""
    last = 0.0
    for step in schedule:
        if len(step) != 2 or not (math.isfinite(step[0]) and step[0] >= 0) or not _finite_pos(step[1]):
            return [f"lr_schedule steps must be [epoch or iteration >= 0, factor > 0], got {step}"]
        if step[0] < last:
            return [f"lr_schedule epochs must be increasing, got {schedule}"]
        last = step[0]
    return []


# ---------------------------------------------------------------------- names in the registries
def activation_problems(v: Mapping[str, Any]) -> list[str]:
    """The activation and stem activation against the registry; the activation is built once (one
    tiny layer) with its parameters: catches e.g. relu with --shift, a bad shape, width <= 0."""
    p: list[str] = []
    acts = list_activations()
    if v["activation"] not in acts:
        p.append(f"unknown activation {v['activation']!r}; choose one of: {', '.join(acts)}")
    else:
        try:
            get_activation(v["activation"], **activation_params(v))
        except (ValueError, TypeError) as e:
            msg = str(e)  # the registry's own message may already start with the quoted name
            p.append(f"activation {msg}" if msg.startswith(repr(v["activation"])) else f"activation {v['activation']!r}: {msg}")
    if v["stem_activation"] is not None and v["stem_activation"] not in acts:
        p.append(f"unknown stem_activation {v['stem_activation']!r}; choose one of: {', '.join(acts)}")
    return p


def data_problems(v: Mapping[str, Any]) -> list[str]:
    """The data set, normalisation and augmentation names."""
    p: list[str] = []
    if v["dataset"] not in DATASETS:
        p.append(f"unknown dataset {v['dataset']!r}; choose one of: {', '.join(sorted(DATASETS))}")
    if v["normalize"] not in NORMALIZATIONS:
        p.append(f"unknown normalize {v['normalize']!r}; choose one of: {', '.join(NORMALIZATIONS)}")
    if v["augment"]:
        try:
            make_augment(v["augment"])
        except (ValueError, UserError) as e:
            p.append(str(e))
    return p
