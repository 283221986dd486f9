r"""``compile = "auto"``: torch.compile the model when the run is long enough to pay back the compile.

Compiling ResNet20 v1 (batch 128) costs a one-off C, paid in the first epoch: the training graph
(forward and backward), nearly the same again for the epoch's last, smaller batch (a recompile
with a dynamic batch size), and the evaluation graph. After that each step is faster by G.
Compiling pays when the run's S training steps satisfy S·G > C. Measured by
``scripts/compile_cost.py --threads 1`` (CPU seconds of the process and its compile workers; the
README's `gaaf train` section has the machine):

    gaaf_relu: cold cache C = 222 s, G = 0.37 s/step → break-even ≈ 590 steps; warm cache C = 32 s → ≈ 80
    relu:      cold cache C = 159 s, G = 0.25 s/step → break-even ≈ 640 steps; warm cache C = 7 s  → ≈ 30

(warm: a later run of a study, Inductor's on-disk cache holding the graphs). The rule takes about
three times the cold break-even, so a run that compiles gains even when its cache is cold, the
machine is busy or more threads shrink the per-step gain more than the compile:

    compile  ⇔  S = epochs · ⌈min(limit_train, n_train) / batch_size⌉ ≥ COMPILE_AUTO_MIN_STEPS = 2000

(≈ 5 CIFAR-10 epochs at batch 128; the seed's 200 epochs are 78,200 steps). Short runs (smoke
tests, small ``--limit-train`` runs, the test suite) stay eager and start at once. ``GAAF_NO_COMPILE=1``
(which also turns off the fused op's eager kernels) makes "auto" eager. ``--compile`` /
``--no-compile`` (``compile = true | false`` in a config file) force it either way.

:func:`resolve_compile` runs inside config validation, so ``config.json`` records the decision
(true/false), never "auto": ``gaaf train --config RUN/config.json`` and ``--resume`` train the way
the run did.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from ..activations.kernels import no_compile_env
from ..data import DATASETS, dataset_info

AUTO = "auto"
#: training steps from which "auto" compiles (see the module docstring for the measurement)
COMPILE_AUTO_MIN_STEPS = 2000


def training_steps(v: Mapping[str, Any]) -> int:
    """Optimizer steps of the whole run: epochs × ⌈training images / batch⌉ (0 for an unknown data set)."""
    if v.get("dataset") not in DATASETS:
        return 0
    n = dataset_info(v["dataset"]).n_train
    if v.get("limit_train") is not None:
        n = min(n, int(v["limit_train"]))
    return int(v["epochs"]) * math.ceil(n / max(1, int(v["batch_size"])))


def resolve_compile(v: Mapping[str, Any]) -> bool:
    """The config's `compile` as a bool: true/false as given; "auto" by the rule above."""
    value = v.get("compile", AUTO)
    if isinstance(value, bool):
        return value
    if value != AUTO:
        raise ValueError(f"compile must be true, false or {AUTO!r}, got {value!r}")
    return not no_compile_env() and training_steps(v) >= COMPILE_AUTO_MIN_STEPS


def compile_problems(v: Mapping[str, Any]) -> list[str]:
    value = v.get("compile", AUTO)
    if isinstance(value, bool) or value == AUTO:
        return []
    return [f"compile must be true, false or {AUTO!r}, got {value!r}"]


__all__ = ["AUTO", "COMPILE_AUTO_MIN_STEPS", "compile_problems", "resolve_compile", "training_steps"]
