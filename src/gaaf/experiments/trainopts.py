"""The bridge from studies to `gaaf train`'s configuration.

A study sets train options by name; this module says which names exist and turns a flat dict of
options into the fully resolved, validated config that `gaaf train --config` will accept — using
`gaaf.train.config` (resolve_config, and config_problems: its one validator, check_config, without
raising) so that a study accepts and rejects exactly what `gaaf train` does.
"""
from __future__ import annotations

from typing import Any

from ..train.config import TrainConfig, config_problems, resolve_config, resolved_dict

#: options a sweep sets itself, per run: a study may not set them
SWEEP_OWNED = {"seed": "use the top-level `seeds = [...]` list", "out": "the sweep chooses each run folder"}


def field_names() -> tuple[str, ...]:
    """Every train option's name, in TrainConfig's order."""
    return tuple(TrainConfig.field_names())


def study_fields() -> tuple[str, ...]:
    """Train options a study may set (all but the ones the sweep owns)."""
    return tuple(f for f in field_names() if f not in SWEEP_OWNED)


def resolve(options: dict[str, Any]) -> dict[str, Any]:
    """Fill in defaults and validate; return every field. Raises UserError on bad values."""
    return resolve_config(file_dict=dict(options)).to_dict()


def problems(options: dict[str, Any]) -> list[str]:
    """Every problem with these options, one sentence each (empty = valid), without raising."""
    return list(config_problems(dict(options)))


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """A run folder's config with its activation fields as the run used them (a config.json written
    before they were recorded holds None for "the activation's default")."""
    return resolved_dict(config)
