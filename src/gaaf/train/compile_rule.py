r"""``compile = "auto"``: torch.compile the model when the run is long enough to pay back the compile.

Compiling ResNet20 v1 (batch 128) costs a one-off C, paid in the first epoch: the training graph
(forward and backward), again for the epoch's last, smaller batch, and the evaluation graph (full
and last batch). After that each step is faster by G. Compiling pays when the run's training
steps S satisfy S·G > C, i.e. S > C/G. Measured on the 2-core Xeon the README names (its
``gaaf train`` section has the commands and the figures), C/G is a few hundred steps with a warm
compile cache and about a thousand with a cold one; the rule takes

    compile  ⇔  S = epochs · ⌈min(limit_train, n_train) / batch_size⌉ ≥ COMPILE_AUTO_MIN_STEPS

with :data:`COMPILE_AUTO_MIN_STEPS` = 2000 (≈ 5 CIFAR-10 epochs at batch 128): past the cold-cache
break-even with margin, so a run that compiles gains, and short runs (smoke tests, tiny
``--limit-train`` runs, the test suite) stay eager and start at once. ``GAAF_NO_COMPILE=1`` (which
also turns off the fused op's eager kernels) makes "auto" eager. ``--compile`` / ``--no-compile``
(``compile = true | false`` in a config file) force it either way.

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
