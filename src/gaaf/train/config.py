"""`TrainConfig`: every setting of one training run, as plain data.

Resolution order (later wins), as in timm's train.py:

    dataclass defaults  <  preset (--preset)  <  config file (--config FILE)  <  explicit CLI flags

The fully resolved config is written to ``RUN/config.json``; ``gaaf train --config RUN/config.json``
reproduces the run (a ``{"config": {...}, "meta": {...}}`` file and a flat dict are both accepted).

Learning-rate schedule: ``lr_schedule`` is a list of ``[m, f]`` steps meaning "after m finished
epochs the learning rate is lr·f" (the last step with m < epoch wins; epochs count from 1).
The seed's Keras ``lr_schedule(epoch)`` counts epochs from 0 and tests ``epoch > 80``, so its
0-based epoch 81 — our epoch 82 — is the first at ×0.1: 81 epochs run at the full rate, not 80.
The `seed` preset reproduces that exactly with steps at 81/121/161/181 (see `SEED_LR_SCHEDULE`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..activations import ACTIVATION_PARAMS, get_activation, list_activations
from ..data import DATASETS, NORMALIZATIONS, dataset_info, make_augment
from ..errors import UserError
from ..models import build_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")

#: Keras `lr_schedule(epoch)`: epoch 0-based, `epoch > 80 → ×0.1` etc. In our 1-based
#: "after m finished epochs" form each milestone moves up by one: the seed runs epochs 1..81
#: at 1e-3, 82..121 at 1e-4, 122..161 at 1e-5, 162..181 at 1e-6, 182..200 at 5e-7.
SEED_LR_SCHEDULE: list[list[float]] = [[81, 1e-1], [121, 1e-2], [161, 1e-3], [181, 0.5e-3]]


@dataclass
class TrainConfig:
    """One training run. Defaults are the seed's recipe (the `seed` preset)."""

    # --- model
    model: str = "resnet20_v1"             # gaaf.models name, e.g. resnet20_v1, resnet56_v2, mlp
    activation: str = "relu"               # gaaf.activations registry name, e.g. relu, gaaf_relu
    shape: str | None = None               # GAAF s(x): sigmoid | gaussian | none (None = activation's default)
    shift: float | None = None             # sigmoid shape: s(x) = sigmoid(slope·(x + shift))
    slope: float | None = None             # sigmoid shape slope
    center: float | None = None            # gaussian shape: s(x) = exp(−(x − center)²/width)
    width: float | None = None             # gaussian shape width
    frequency: float | None = None         # K, the sawtooth's inverse period (default 10,000)
    variant: str | None = None             # floor (paper) | round (seed's ex13)
    stem_activation: str | None = None     # activation of the stem conv (None = same as `activation`)
    batch_norm: bool = True                # BatchNorm after each conv
    hidden: list[int] | None = None        # MLP hidden sizes (units); None = the model's default
    dropout: float = 0.0                   # MLP dropout probability in [0, 1)
    # --- data
    dataset: str = "cifar10"               # gaaf.data name
    data_dir: str | None = None            # None = $GAAF_DATA_DIR or ~/.cache/gaaf
    download: bool = True                  # fetch the data set when it is missing
    normalize: str = "pixel_mean"          # pixel_mean (seed: per-pixel mean subtraction) | channel | ...
    augment: list[str] = field(default_factory=list)  # e.g. [], ["shift", "flip"], ["crop", "flip"]
    limit_train: int | None = None         # images; None = all
    limit_test: int | None = None          # images; None = all
    # --- optimisation
    preset: str = "seed"                   # seed | he2016: a recipe that sets the fields below
    epochs: int = 200                      # passes over the training set
    batch_size: int = 128                  # images per step, summed over all ranks
    optimizer: str = "adam"                # adam | sgd
    lr: float = 1e-3                       # base learning rate (before lr_schedule factors)
    momentum: float = 0.9                  # SGD momentum
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam (β1, β2)
    adam_eps: float = 1e-7                 # Adam ε (Keras' default; PyTorch's is 1e-8)
    weight_decay: float = 0.0              # optimizer weight decay (coupled, as torch.optim.SGD)
    l2: float = 1e-4                       # Keras kernel_regularizer: loss += l2·Σ w² over conv kernels
    lr_schedule: list[list[float]] = field(default_factory=lambda: [list(s) for s in SEED_LR_SCHEDULE])
    # --- run
    seed: int = 0                          # seeds torch, numpy, random and the loader's generator
    device: str = "auto"                   # auto (cuda if available) | cpu | cuda
    compile: bool = False                  # torch.compile the model
    amp: bool = False                      # bf16 autocast
    channels_last: bool | None = None      # None = on CUDA only
    tensorboard: bool = False              # also log to OUT/tensorboard (needs the tensorboard package)
    probe: bool = False                    # record OUT/probes.json (gaaf.train.probes) during training
    probe_every: int = 50                  # with probe: sample one training batch in N (>= 1)
    out: str | None = None                 # run folder; None = runs/<model>-<activation>-s<seed>-<time>

    # ------------------------------------------------------------------ helpers
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def act_params(self) -> dict[str, Any]:
        """Only the activation parameters that were set (None = the activation's own default)."""
        return {k: getattr(self, k) for k in ACTIVATION_PARAMS if getattr(self, k) is not None}

    def problems(self) -> list[str]:
        """Every problem with this config, one short sentence each (empty = valid)."""
        return _problems(self)

    def validate(self) -> "TrainConfig":
        """Raise UserError naming ALL problems (one line, '; '-separated); return self when valid."""
        probs = self.problems()
        if probs:
            raise UserError("invalid training config: " + "; ".join(probs))
        return self


#: Recipes. `seed`: the seed repository's Keras ResNet recipe. `he2016`: He et al. 2016, CIFAR-10.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": dict(
        optimizer="adam", lr=1e-3, adam_betas=[0.9, 0.999], adam_eps=1e-7, weight_decay=0.0, l2=1e-4,
        lr_schedule=[list(s) for s in SEED_LR_SCHEDULE], batch_size=128, epochs=200, augment=[],
        normalize="pixel_mean",
    ),
    "he2016": dict(
        optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, l2=0.0, batch_size=128, epochs=200,
        augment=["crop", "flip"], normalize="channel", lr_schedule=[[100, 0.1], [150, 0.01]],
    ),
}


# ---------------------------------------------------------------------- resolving
def resolve_config(
    file_dict: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    validate: bool = True,
) -> TrainConfig:
    """defaults < preset < `file_dict` (a config file's contents) < `overrides` (explicit flags).

    `overrides` entries whose value is None are ignored (argparse's "flag not given").
    Unknown keys raise UserError listing the allowed ones.
    """
    file_dict = unwrap_config(file_dict or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for source, d in (("config file", file_dict), ("overrides", overrides)):
        unknown = sorted(set(d) - set(TrainConfig.field_names()))
        if unknown:
            raise UserError(
                f"unknown config key(s) in {source}: {', '.join(unknown)}; allowed: {', '.join(TrainConfig.field_names())}"
            )
    preset = overrides.get("preset", file_dict.get("preset", TrainConfig.preset))
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(PRESETS))}")
    merged: dict[str, Any] = {**PRESETS[preset], **file_dict, **overrides, "preset": preset}
    problems: list[str] = []
    values = {k: _coerce(k, v, problems) for k, v in merged.items()}
    if problems:
        raise UserError("invalid training config: " + "; ".join(problems))
    cfg = TrainConfig(**values)
    return cfg.validate() if validate else cfg


def config_problems(d: Mapping[str, Any]) -> list[str]:
    """All problems with a (flat or wrapped) config dict, without raising — for validating study files."""
    try:
        d = unwrap_config(d)
    except UserError as e:
        return [str(e)]
    probs = [f"unknown key {k!r}" for k in sorted(set(d) - set(TrainConfig.field_names()))]
    preset = d.get("preset", TrainConfig.preset)
    if preset not in PRESETS:
        return probs + [f"unknown preset {preset!r}; choose one of: {', '.join(sorted(PRESETS))}"]
    known = {k: v for k, v in d.items() if k in TrainConfig.field_names()}
    values = {k: _coerce(k, v, probs) for k, v in {**PRESETS[preset], **known}.items()}
    if len(probs) > 0:
        return probs
    return TrainConfig(**values).problems()


def unwrap_config(d: Mapping[str, Any]) -> dict[str, Any]:
    """Accept a run's ``{"config": {...}, "meta": {...}}`` as well as a flat dict of fields."""
    if not isinstance(d, Mapping):
        raise UserError(f"a config must be a table/object of fields, got {type(d).__name__}")
    if "config" in d and isinstance(d["config"], Mapping) and set(d) <= {"config", "meta"}:
        return dict(d["config"])
    return dict(d)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file (by extension; .json else TOML) into a flat dict."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"  # a run folder
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} not found; pass a .json or .toml file or a run folder")
    try:
        text = path.read_text(encoding="utf-8")  # UnicodeDecodeError (a ValueError) on binary garbage
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except OSError as e:
        raise UserError(f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    except Exception as e:  # JSONDecodeError / TOMLDecodeError / UnicodeDecodeError
        msg = " ".join(str(e).split())[:200]
        raise UserError(f"cannot parse config file {str(path)!r}: {msg}") from None
    return unwrap_config(data)


# ---------------------------------------------------------------------- types and checks
_HINTS: dict[str, Any] = {}


def _hints() -> dict[str, Any]:
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


def _coerce(name: str, value: Any, problems: list[str]) -> Any:
    """Convert a JSON/TOML/argparse value to the field's type, or append a problem and return it as is."""
    hint = _hints()[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        problems.append(f"{name} must not be empty (null)")
        return value
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base)
    try:
        if base in _SCALARS:
            return _coerce_scalar(base, value, _SCALARS[base][0])
        if origin is list:
            (inner,) = typing.get_args(base)
            if isinstance(value, str):  # "shift,flip" from a flag or a TOML string
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise TypeError("a list")
            return [_coerce_item(inner, v) for v in value]
    except TypeError as e:
        problems.append(f"{name} must be {e}, got {value!r}")
        return value
    return value


#: scalar field types → (what a single value must be, what a list of them must be)
_SCALARS: dict[type, tuple[str, str]] = {
    bool: ("true or false", "a list of true/false values"),
    int: ("an integer", "a list of integers"),
    float: ("a number", "a list of numbers"),
    str: ("a string", "a list of strings"),
}


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


def _finite_pos(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _problems(cfg: TrainConfig) -> list[str]:  # noqa: C901 - a flat list of checks reads best
    p: list[str] = []
    # types first: a config built directly (not via resolve_config) may hold anything
    for f in dataclasses.fields(cfg):
        _coerce(f.name, getattr(cfg, f.name), p)
    if p:
        return p
    if cfg.preset not in PRESETS:
        p.append(f"unknown preset {cfg.preset!r}; choose one of: {', '.join(sorted(PRESETS))}")
    if cfg.epochs < 1:
        p.append(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        p.append(f"batch_size must be >= 1, got {cfg.batch_size}")
    if not _finite_pos(cfg.lr):
        p.append(f"lr must be a finite number > 0, got {cfg.lr}")
    if cfg.optimizer not in OPTIMIZERS:
        p.append(f"unknown optimizer {cfg.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    if not (math.isfinite(cfg.momentum) and 0 <= cfg.momentum < 1):
        p.append(f"momentum must be in [0, 1), got {cfg.momentum}")
    if len(cfg.adam_betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in cfg.adam_betas):
        p.append(f"adam_betas must be two numbers in [0, 1), got {cfg.adam_betas}")
    if not _finite_pos(cfg.adam_eps):
        p.append(f"adam_eps must be a finite number > 0, got {cfg.adam_eps}")
    for name in ("weight_decay", "l2"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            p.append(f"{name} must be a finite number >= 0, got {v}")
    last = 0.0
    for step in cfg.lr_schedule:
        if len(step) != 2 or not (math.isfinite(step[0]) and step[0] >= 0) or not _finite_pos(step[1]):
            p.append(f"lr_schedule steps must be [epoch >= 0, factor > 0], got {step}")
            break
        if step[0] < last:
            p.append(f"lr_schedule epochs must be increasing, got {cfg.lr_schedule}")
            break
        last = step[0]
    if cfg.probe_every < 1:
        p.append(f"probe_every must be >= 1 (sample one training batch in N), got {cfg.probe_every}")
    if cfg.seed < 0:
        p.append(f"seed must be >= 0, got {cfg.seed}")
    if cfg.device not in DEVICES:
        p.append(f"unknown device {cfg.device!r}; choose one of: {', '.join(DEVICES)}")
    for name in ("limit_train", "limit_test"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            p.append(f"{name} must be >= 1 (or unset for all images), got {v}")
    if not (math.isfinite(cfg.dropout) and 0 <= cfg.dropout < 1):
        p.append(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.hidden is not None and (not cfg.hidden or any(h < 1 for h in cfg.hidden)):
        p.append(f"hidden must be a non-empty list of sizes >= 1, got {cfg.hidden}")
    if cfg.out is not None and not cfg.out.strip():
        p.append("out must be a folder path, got an empty string")
    p += _registry_problems(cfg)
    return p


def _registry_problems(cfg: TrainConfig) -> list[str]:
    """Names checked against the live registries (models, data sets, activations, augmentations)."""
    p: list[str] = []
    acts = list_activations()
    if cfg.activation not in acts:
        p.append(f"unknown activation {cfg.activation!r}; choose one of: {', '.join(acts)}")
    else:
        try:  # builds one tiny layer: catches e.g. relu with --shift, bad shape, width <= 0
            get_activation(cfg.activation, **cfg.act_params())
        except (ValueError, TypeError) as e:
            p.append(f"activation {cfg.activation!r}: {e}")
    if cfg.stem_activation is not None and cfg.stem_activation not in acts:
        p.append(f"unknown stem_activation {cfg.stem_activation!r}; choose one of: {', '.join(acts)}")
    if not p:  # activations fine: now the model with them
        p += _model_problems(cfg)
    p += _data_problems(cfg)
    return p


def _model_problems(cfg: TrainConfig) -> list[str]:
    """Build the model on the meta device (no memory, no init cost) with the run's arguments: catches
    unknown names, bad depths and options that do not fit the model (e.g. hidden on a ResNet).
    An unknown data set is reported by _data_problems; the model is checked on CIFAR-10's shape."""
    data = dataset_info(cfg.dataset if cfg.dataset in DATASETS else "cifar10")
    try:
        with torch.device("meta"):
            build_model(
                cfg.model, data.num_classes, data.in_shape, cfg.activation, cfg.act_params(),
                stem_activation=cfg.stem_activation, batch_norm=cfg.batch_norm, hidden=cfg.hidden,
                dropout=cfg.dropout,
            )
    except (ValueError, TypeError, UserError) as e:
        return [str(e).strip().splitlines()[0] if str(e).strip() else f"cannot build model {cfg.model!r}"]
    return []


def _data_problems(cfg: TrainConfig) -> list[str]:
    p: list[str] = []
    if cfg.dataset not in DATASETS:
        p.append(f"unknown dataset {cfg.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
    if cfg.normalize not in NORMALIZATIONS:
        p.append(f"unknown normalize {cfg.normalize!r}; choose one of: {', '.join(NORMALIZATIONS)}")
    if cfg.augment:
        try:
            make_augment(cfg.augment)
        except (ValueError, UserError) as e:
            p.append(str(e))
    return p
