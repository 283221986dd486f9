"""The bridge from studies to `gaaf train`'s configuration.

A study sets train options by name; this module says which names exist and turns a flat dict of
options into the fully resolved, validated config that `gaaf train --config` will accept — using
`gaaf.train.config` (TrainConfig, resolve_config, validate) so that a study accepts and rejects
exactly what `gaaf train` does.

If `gaaf.train` is not installed (a partial checkout) the known field names below are used and
only unknown keys are caught here; `gaaf train` still validates the values when a run starts.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from ..errors import UserError

#: TrainConfig's fields as documented in docs/DEVELOPING.md; used only without gaaf.train
_FALLBACK_FIELDS = (
    "model", "activation", "shape", "shift", "slope", "center", "width", "frequency", "variant",
    "stem_activation", "batch_norm", "hidden", "dropout", "dataset", "data_dir", "download",
    "normalize", "augment", "preset", "epochs", "batch_size", "optimizer", "lr", "momentum",
    "weight_decay", "l2", "lr_schedule", "seed", "device", "compile", "amp", "channels_last",
    "limit_train", "limit_test", "tensorboard", "probe", "out",
)  # fmt: skip

#: options a sweep sets itself, per run: a study may not set them
SWEEP_OWNED = {"seed": "use the top-level `seeds = [...]` list", "out": "the sweep chooses each run folder"}

#: training-set sizes, for the time estimate when limit_train is not set
TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "mnist": 60_000}
TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032, "mnist": 10_000}


def _train_config_module() -> Any | None:
    """gaaf.train.config, or None when the train package is absent (not when it is broken)."""
    try:
        return importlib.import_module("gaaf.train.config")
    except ModuleNotFoundError as e:
        if e.name in ("gaaf.train", "gaaf.train.config"):
            return None
        raise


def field_names() -> tuple[str, ...]:
    """Every train option's name, in TrainConfig's order."""
    mod = _train_config_module()
    if mod is None:
        return _FALLBACK_FIELDS
    cls = mod.TrainConfig
    if hasattr(cls, "field_names"):
        return tuple(cls.field_names())
    return tuple(f.name for f in dataclasses.fields(cls))


def study_fields() -> tuple[str, ...]:
    """Train options a study may set (all but the ones the sweep owns)."""
    return tuple(f for f in field_names() if f not in SWEEP_OWNED)


def resolve(options: dict[str, Any]) -> dict[str, Any]:
    """Fill in defaults and validate; return every field. Raises ValueError/UserError on bad values.

    Without gaaf.train the options come back unchanged (only key names were checked).
    """
    mod = _train_config_module()
    if mod is None:
        unknown = sorted(set(options) - set(_FALLBACK_FIELDS))
        if unknown:
            raise ValueError(f"unknown train option(s): {', '.join(unknown)}")
        return dict(options)
    cfg = mod.resolve_config(file_dict=dict(options))
    if hasattr(cfg, "validate"):
        cfg.validate()
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    return dataclasses.asdict(cfg)


def problems(options: dict[str, Any]) -> list[str]:
    """Every problem with these options, one sentence each (empty = valid), without raising."""
    mod = _train_config_module()
    if mod is None:
        return [f"unknown train option {k!r}" for k in sorted(set(options) - set(_FALLBACK_FIELDS))]
    if hasattr(mod, "config_problems"):
        return list(mod.config_problems(dict(options)))
    try:
        resolve(options)
    except (UserError, ValueError, TypeError) as e:
        return [str(e).strip().splitlines()[0]]
    return []


def have_train() -> bool:
    """True when gaaf.train (and so value validation) is available."""
    return _train_config_module() is not None
