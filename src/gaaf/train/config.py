"""`TrainConfig`: every setting of one training run, as plain data.

Resolution order (later wins), as in timm's train.py:

    dataclass defaults  <  preset (--preset)  <  config file (--config FILE)  <  explicit CLI flags

The fully resolved config is written to ``RUN/config.json``; ``gaaf train --config RUN/config.json``
reproduces the run (a ``{"config": {...}, "meta": {...}}`` file and a flat dict are both accepted).
Resolved includes the activation's parameters: a GAAF activation's shape, the shape's parameters,
frequency and variant are the values the layer uses (gaaf_relu: sigmoid, shift 4, slope 1, 10000,
floor; `resolve_activation_fields`); those that do not apply (all of them for a plain activation,
center/width for a sigmoid shape) stay None. ``stem_activation`` None stays None: it means "the
activation itself, with its parameters", which no name alone says (a named stem takes no parameters).
Configs written before this (None = "the activation's default") resolve to the same values, so
--resume and the sweep compare both sides resolved. When flags change the activation or its shape
over a config file, the file's parameters that are just its activation's defaults are dropped, so
``--config RUN/config.json --activation gaaf_tanh`` is gaaf_tanh with its own defaults.

One validator, `check_config(flat dict) -> (TrainConfig | None, problems)`, behind all three ways in:
`resolve_config` (raises one UserError naming every problem), `config_problems` (study files: each
problem reported with its TOML line) and `TrainConfig.problems()` / `.validate()`. The checks
themselves (types, ranges, registry names) are in `gaaf.train.validate`.

Learning-rate schedule: ``lr_schedule`` is a list of ``[m, f]`` steps meaning "after m finished
epochs (``lr_schedule_unit = "iteration"``: iterations) the learning rate is lr·f" (the last step with
m < epoch wins; epochs count from 1; see `gaaf.train.schedule`). The seed's Keras ``lr_schedule(epoch)`` counts epochs from 0 and tests ``epoch > 80``, so its
0-based epoch 81 — our epoch 82 — is the first at ×0.1: 81 epochs run at the full rate, not 80.
The `seed` preset reproduces that exactly with steps at 81/121/161/181 (see `SEED_LR_SCHEDULE`).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..activations import ACTIVATION_PARAMS, activation_params, get_activation
from ..data import DATASETS, dataset_info
from ..errors import UserError
from ..models import build_model
from ..models.factory import is_factory_name
from . import validate as checks
from .compile_rule import compile_problems, resolve_compile
from .validate import DEVICES, OPTIMIZERS  # noqa: F401 - the choices, re-exported for the CLI's help

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

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
    shape: str | None = None               # GAAF s(x): sigmoid | gaussian | none (None = activation's default;
                                           # check_config fills in the values used, see the module doc)
    shift: float | None = None             # sigmoid shape: s(x) = sigmoid(slope·(x + shift))
    slope: float | None = None             # sigmoid shape slope
    center: float | None = None            # gaussian shape: s(x) = exp(−(x − center)²/width)
    width: float | None = None             # gaussian shape width
    frequency: float | None = None         # K, the sawtooth's inverse period (default 10,000)
    variant: str | None = None             # floor (paper) | round (seed's ex13)
    stem_activation: str | None = None     # activation of the stem conv (None = same as `activation`)
    batch_norm: bool = True                # BatchNorm after each conv
    keras2_batch_norm: bool = False        # BatchNorm with Keras 2.2/TF 1.x zero-debiased moving statistics (opt-in)
    precise_bn: int = 2048                 # evaluate with BatchNorm statistics recomputed from N training images
                                           # (train/precise_bn.py); 0 = the moving statistics as trained
    seed_v2_bug: bool = False              # ResNet v2 as the seed ran it: no activation before each later block's
                                           # first 1×1 conv, linear head (gaaf.models.resnet)
    shortcut: str = "B"                    # resnet v1 where the shape changes: B 1×1 projection (Keras, seed) | A zero padding (He et al.)
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
    clip_grad_norm: float = 0.0            # clip the gradient's global L2 norm to this before each step; 0 = off
    lr_schedule: list[list[float]] = field(default_factory=lambda: [list(s) for s in SEED_LR_SCHEDULE])
    lr_schedule_unit: str = "epoch"        # epoch | iteration: what lr_schedule's milestones count
    warmup_iterations: int = 0             # lr rises linearly to its value over the first N iterations; 0 = none
    max_iterations: int = 0                # stop after this many iterations (optimizer steps) in all; 0 = no limit
    # --- run
    seed: int = 0                          # seeds torch, numpy, random and the loader's generator
    device: str = "auto"                   # auto (cuda if available) | cpu | cuda
    compile: bool | str = "auto"           # torch.compile the model: true | false | "auto" (long runs;
                                           # check_config resolves it, see gaaf.train.compile_rule)
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
        return check_config(self.to_dict())[1]

    def validate(self) -> "TrainConfig":
        """Raise UserError naming ALL problems (one line, '; '-separated); return self when valid."""
        probs = self.problems()
        if probs:
            raise UserError("invalid training config: " + "; ".join(probs))
        return self


#: He et al. 2016 (arXiv:1512.03385, sec. 4.2), CIFAR-10: lr 0.1 ÷10 at 32k and 48k iterations, stop at 64k.
HE2016_LR_SCHEDULE: list[list[float]] = [[32000, 0.1], [48000, 0.01]]
HE2016_ITERATIONS = 64000

#: Recipes. `seed`: the seed repository's Keras ResNet recipe. `he2016`: He et al. 2016's CIFAR-10 recipe:
#: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, per-pixel mean subtracted, pad-4 crop + flip,
#: option-A shortcuts, the schedule in iterations; 164 epochs of 50,000 images (391 steps) hold the
#: 64,000 iterations, the last epoch cut short at 267 steps.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": dict(
        optimizer="adam", lr=1e-3, adam_betas=[0.9, 0.999], adam_eps=1e-7, weight_decay=0.0, l2=1e-4,
        clip_grad_norm=0.0, lr_schedule=[list(s) for s in SEED_LR_SCHEDULE], lr_schedule_unit="epoch",
        warmup_iterations=0, max_iterations=0, batch_size=128, epochs=200, augment=[], normalize="pixel_mean",
        keras2_batch_norm=False, shortcut="B",
    ),
    "he2016": dict(
        optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, l2=0.0, clip_grad_norm=0.0, batch_size=128,
        epochs=164, max_iterations=HE2016_ITERATIONS, lr_schedule=[list(s) for s in HE2016_LR_SCHEDULE],
        lr_schedule_unit="iteration", warmup_iterations=0, augment=["crop", "flip"], normalize="pixel_mean",
        keras2_batch_norm=False, shortcut="A",
    ),
}


# ---------------------------------------------------------------------- the model a config describes
def build_model_for(cfg: TrainConfig, in_shape: Sequence[int], num_classes: int) -> nn.Module:
    """`cfg`'s model (name, activation and its parameters, stem, batch norm, shortcut, MLP sizes, dropout) for
    inputs of `in_shape` (C, H, W) and `num_classes` outputs, on torch's current default device.

    The one place a config becomes a model: training, evaluation, the benchmarks, the sweep's
    estimate and config validation (on the meta device) all build through here."""
    return build_model(
        cfg.model, num_classes, tuple(in_shape), cfg.activation, cfg.act_params(),
        stem_activation=cfg.stem_activation, batch_norm=cfg.batch_norm, keras2_batch_norm=cfg.keras2_batch_norm,
        seed_v2_bug=cfg.seed_v2_bug, shortcut=cfg.shortcut, hidden=cfg.hidden, dropout=cfg.dropout,
    )


# ---------------------------------------------------------------------- the one validator
def check_config(d: Mapping[str, Any]) -> tuple[TrainConfig | None, list[str]]:
    """Validate a flat dict of fields (a config file's contents after `unwrap_config`): return the
    config and no problems, or None and every problem, one short sentence each.

    Fields `d` leaves out come from its preset (default: seed), then the dataclass defaults.
    Types are checked first (a value of the wrong type stops there); then ranges and choices, the
    registries' names and, when the activations are fine, the model itself, built on the meta device."""
    cfg, problems = _typed(d)
    if cfg is None:
        return None, problems
    values = {name: getattr(cfg, name) for name in TrainConfig.field_names()}
    problems += checks.value_problems(values)
    names = checks.activation_problems(values)
    problems += names or _model_problems(cfg)
    problems += checks.data_problems(values)
    problems += compile_problems(values)
    if problems:
        return None, problems
    return dataclasses.replace(cfg, **resolve_activation_fields(values), compile=resolve_compile(values)), []


# ---------------------------------------------------------------------- the activation as it runs
def resolve_activation_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    """The activation fields of config dict `d` (`ACTIVATION_PARAMS`) as the activation uses them:
    for a GAAF layer (one whose module has a `spec`) its shape, that shape's parameters, frequency
    and variant, the fields that do not apply None; for any other activation the fields as given.

    Read from the registry's own layer, as `describe_activation` does: ``gaaf_relu`` → shape
    "sigmoid", shift 4.0, slope 1.0, frequency 10000.0, variant "floor", center/width None.
    A `d` that cannot be built (an unknown name, bad parameters) is returned as given."""
    given = {k: d.get(k) for k in ACTIVATION_PARAMS}
    if not isinstance(d.get("activation"), str):
        return given
    try:
        spec = getattr(get_activation(d["activation"], **activation_params(d)), "spec", None)
    except (ValueError, TypeError):
        return given
    if spec is None or not isinstance(spec.shape, str):  # a plain or custom layer: nothing to fill in
        return given
    shape_params = {k: None for k in ACTIVATION_PARAMS if k not in ("shape", "frequency", "variant")}
    return {**shape_params, **dict(spec.shape_params), "shape": spec.shape,
            "frequency": float(spec.frequency), "variant": spec.variant}


#: Fields added after runs had been written, with the value those runs had: a run's config.json or
#: checkpoint without the key trained with it (PyTorch's BatchNorm statistics before keras2_batch_norm;
#: every site activated before seed_v2_bug; the moving statistics at evaluation before precise_bn;
#: 1×1 projection shortcuts and an epoch schedule without warm-up or iteration limit, before shortcut,
#: lr_schedule_unit, warmup_iterations and max_iterations; no gradient clipping before clip_grad_norm).
LEGACY_DEFAULTS: dict[str, Any] = {
    "keras2_batch_norm": False, "seed_v2_bug": False, "precise_bn": 0, "shortcut": "B",
    "lr_schedule_unit": "epoch", "warmup_iterations": 0, "max_iterations": 0, "clip_grad_norm": 0.0,
}


def with_legacy_defaults(d: Mapping[str, Any]) -> dict[str, Any]:
    """A run's saved config (config.json, a checkpoint's) with the fields it predates filled in
    with the values it ran with (`LEGACY_DEFAULTS`), not today's preset values."""
    return {**LEGACY_DEFAULTS, **d}


def saved_config(d: Mapping[str, Any]) -> TrainConfig:
    """The config a checkpoint's ``config`` entry records (fields it predates: the values it ran with)."""
    saved = with_legacy_defaults(d)
    return TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.field_names()})


def resolved_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    """A flat config dict of a run with its activation fields resolved (`resolve_activation_fields`)
    and the fields it predates filled in (`with_legacy_defaults`): what to compare a config.json or
    checkpoint config written before they were recorded against."""
    return {**with_legacy_defaults(d), **resolve_activation_fields(d)}


def _drop_default_params(file_dict: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`file_dict` without the activation parameters that only restate its activation's defaults,
    when `overrides` change the activation or the shape (else unchanged): a resolved config.json
    then takes a new activation with that activation's own defaults, not the old one's values."""
    changed = [k for k in ("activation", "shape") if k in overrides and overrides[k] != file_dict.get(k)]
    if not changed or not isinstance(file_dict.get("activation"), str):
        return file_dict
    defaults = resolve_activation_fields({"activation": file_dict["activation"]})
    keyed = {"activation": file_dict["activation"], **({"shape": file_dict["shape"]} if file_dict.get("shape") else {})}
    defaults.update({k: v for k, v in resolve_activation_fields(keyed).items() if k != "shape"})
    return {k: v for k, v in file_dict.items()
            if not (k in ACTIVATION_PARAMS and v is not None and v == defaults.get(k))}


def _typed(d: Mapping[str, Any]) -> tuple[TrainConfig | None, list[str]]:
    """Keys and types: (None, problems) when a key is unknown or a value has the wrong type, else the
    config built from the coerced values and [] (or [unknown preset]: the preset's fields left out)."""
    names = TrainConfig.field_names()
    unknown = [f"unknown key {k!r}" for k in sorted(set(d) - set(names))]
    preset = d.get("preset", TrainConfig.preset)
    known_preset = isinstance(preset, str) and preset in PRESETS
    preset_problems = [_unknown_preset(preset)] if isinstance(preset, str) and not known_preset else []
    given = {**(PRESETS[preset] if known_preset else {}), **{k: v for k, v in d.items() if k in names}}
    values, type_problems = checks.coerce(_hints(), given)
    if unknown or type_problems:
        return None, unknown + preset_problems + type_problems
    return TrainConfig(**values), preset_problems


def _model_problems(cfg: TrainConfig) -> list[str]:
    """Build the model on the meta device (no memory, no init cost) with the run's arguments: catches
    unknown names, bad depths and options that do not fit the model (e.g. hidden on a ResNet).
    A user's factory (pkg.module:factory) is built on the CPU: its code need not run on the meta
    device; that also checks that it imports, returns a module and converts completely.
    An unknown data set is reported by data_problems; the model is checked on CIFAR-10's shape."""
    data = dataset_info(cfg.dataset if cfg.dataset in DATASETS else "cifar10")
    try:
        with torch.device("cpu" if is_factory_name(cfg.model) else "meta"):
            build_model_for(cfg, data.in_shape, data.num_classes)
    except (ValueError, TypeError, UserError) as e:
        return [str(e).strip().splitlines()[0] if str(e).strip() else f"cannot build model {cfg.model!r}"]
    return []


def _unknown_preset(preset: Any) -> str:
    return f"unknown preset {preset!r}; choose one of: {', '.join(sorted(PRESETS))}"


_HINTS: dict[str, Any] = {}


def _hints() -> dict[str, Any]:
    """TrainConfig's field annotations as types (resolved once: `from __future__ import annotations`)."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


# ---------------------------------------------------------------------- resolving
def resolve_config(
    file_dict: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    validate: bool = True,
) -> TrainConfig:
    """defaults < preset < `file_dict` (a config file's contents) < `overrides` (explicit flags).

    `overrides` entries whose value is None are ignored (argparse's "flag not given").
    Unknown keys raise UserError listing the allowed ones; every other problem is named in one
    UserError (`check_config`). validate=False checks the types only.
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
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(_unknown_preset(preset))
    merged = {**_drop_default_params(file_dict, overrides), **overrides, "preset": preset}
    cfg, problems = check_config(merged) if validate else _typed(merged)
    if cfg is None:
        raise UserError("invalid training config: " + "; ".join(problems))
    return cfg


def config_problems(d: Mapping[str, Any]) -> list[str]:
    """All problems with a (flat or wrapped) config dict, without raising — for validating study files."""
    try:
        return check_config(unwrap_config(d))[1]
    except UserError as e:  # not a table of fields at all
        return [str(e)]


def unwrap_config(d: Mapping[str, Any]) -> dict[str, Any]:
    """Accept a run's ``{"config": {...}, "meta": {...}}`` (its fields filled in with
    `with_legacy_defaults`) as well as a flat dict of fields."""
    if not isinstance(d, Mapping):
        raise UserError(f"a config must be a table/object of fields, got {type(d).__name__}")
    if "config" in d and isinstance(d["config"], Mapping) and set(d) <= {"config", "meta"}:
        return with_legacy_defaults(d["config"])  # a run's config.json: the settings it ran with
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
