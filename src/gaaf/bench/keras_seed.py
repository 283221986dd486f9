r"""`gaaf bench keras`: training throughput of the seed's stack (Keras 3) against `gaaf train`'s defaults.

The seed trained the Keras CIFAR-10 example's ResNets with its GAAF activation in place of relu.
Here, alternating round by round (:mod:`._timing`), two candidates per activation, each stack in a
process of its own:

* **keras**: :func:`gaaf.bench.keras_worker.keras_resnet_v1` (the Keras example's ``resnet_v1``, layer
  for layer, compiled with Adam(1e-3) and categorical cross-entropy on one-hot NHWC inputs, as the
  seed) in a :class:`~gaaf.bench.keras_worker.KerasWorker` process; each step is
  ``model.train_on_batch``. The activation is :class:`gaaf.keras.GAAF` (gaaf_relu, shift −1, the
  seed sweep's best) or ``keras.layers.ReLU``. The Keras backend is whatever Keras is configured
  with (``KERAS_BACKEND``; unset: the first of tensorflow, jax, torch installed); the seed ran
  TensorFlow.
* **gaaf**: `gaaf train`'s own step (:func:`gaaf.train.setup.build_training`) with the settings a
  default ``gaaf train --activation gaaf_relu --shift -1`` run resolves to (seed preset; ``compile``
  "auto", which a 200-epoch CIFAR-10 run resolves to compiled unless ``GAAF_NO_COMPILE=1``; fp32;
  channels_last as on that device), on a device-resident synthetic batch as ``gaaf bench train``.

Reported per activation: images/s of both (median sample), gaaf ÷ keras from the medians and
paired (per-round ratios), and each candidate's first call (graph building, compiling). Under the
table, the *bound* per activation (:mod:`.step_bound`): gaaf's convolutions (profiled in its own
step) plus the activation kernels alone, the img/s no step doing that work can exceed, and the
gaaf/keras ratio that allows.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..errors import UserError
from ..train.config import resolve_config
from ..train.setup import uses_channels_last
from ._timing import Timing, alternate, quartiles
from .activations import environment, machine_line
from .kernel_ceiling import activation_floor, gaaf_sites
from .keras_worker import ACTIVATIONS, KerasWorker, resolve_backend
from .step_bound import StepBound, conv_seconds
from .train import build_candidate, synthetic_batch, train_fn

def _depth(model: str) -> int:
    name = model.strip().lower()
    if not (name.startswith("resnet") and name.endswith("_v1") and name[6:-3].isdigit()):
        raise UserError(f"gaaf bench keras times the Keras example's ResNet v1: --model resnet<6n+2>_v1, got {model!r}")
    return int(name[6:-3])


@dataclass
class KerasBenchResult:
    timings: dict[str, Timing] = field(default_factory=dict)  # "keras/relu", "gaaf/gaaf_relu", ...
    images_per_sample: int = 0
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, StepBound] = field(default_factory=dict)  # per activation (see .step_bound)

    def images_per_second(self, key: str) -> float:
        return self.images_per_sample / self.timings[key].median

    def ratios(self, activation: str) -> "tuple[float, float, float, float]":
        """(gaaf ÷ keras from the medians, paired median, q1, q3)."""
        keras_t, gaaf_t = self.timings[f"keras/{activation}"], self.timings[f"gaaf/{activation}"]
        per_round = [k / g for k, g in zip(keras_t.samples, gaaf_t.samples)]
        q1, q3 = quartiles(per_round)
        return keras_t.median / gaaf_t.median, statistics.median(per_round), q1, q3

    def as_dict(self) -> dict[str, Any]:
        acts = dict.fromkeys(k.split("/", 1)[1] for k in self.timings)
        return {"environment": self.environment, "settings": self.settings,
                "timings": {k: {**t.as_dict(), "images_per_second": self.images_per_second(k)}
                            for k, t in self.timings.items()},
                "ratios": {a: dict(zip(("gaaf_over_keras", "paired_median", "paired_q1", "paired_q3"), self.ratios(a)))
                           for a in acts},
                "bounds": {a: {**b.as_dict(), "gaaf_over_keras": b.images_per_second / self.images_per_second(f"keras/{a}")}
                           for a, b in self.bounds.items()}}


def bench_keras(model: str = "resnet20_v1", *, activations: Sequence[str] = ("gaaf_relu",), batch_size: int = 128,
                rounds: int = 5, steps: int = 3, warmup: int = 1, backend: "str | None" = None,
                log: "Callable[[str], None] | None" = None) -> KerasBenchResult:
    """Time the seed's Keras stack against `gaaf train`'s defaults on CPU (see the module docstring)."""
    log = log or (lambda msg: None)
    for name, v, low in (("batch_size", batch_size, 1), ("rounds", rounds, 1), ("steps", steps, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UserError(f"{name} must be a whole number >= {low}, got {v!r}")
    bad = [a for a in activations if a not in ACTIVATIONS]
    if bad or not activations:
        raise UserError(f"unknown activation {bad[0] if bad else '(none)'!r}; choose from: {', '.join(ACTIVATIONS)}")
    depth = _depth(model)
    backend = resolve_backend(backend)
    device = torch.device("cpu")
    cands: dict[str, Callable[[], None]] = {}
    gaaf_settings: dict[str, Any] = {}
    profiled: dict[str, Callable[[], None]] = {}  # one gaaf step per activation, for the bound
    sizes: list[int] = []
    spec = None
    workers: list[KerasWorker] = []
    try:
        for act in activations:
            cfg = resolve_config(overrides={"model": model, "activation": act, "batch_size": batch_size,
                                            "device": "cpu", "download": False, **ACTIVATIONS[act]})
            gaaf_settings = {"compile": cfg.compile, "amp": cfg.amp, "channels_last": uses_channels_last(cfg, device),
                             "preset": cfg.preset}
            c = build_candidate(cfg, device, compile=cfg.compile, channels_last=gaaf_settings["channels_last"])
            x, y = synthetic_batch(cfg, batch_size, device)
            cands[f"gaaf/{act}"] = train_fn(c, x, y, steps)
            profiled[act] = train_fn(c, x, y, 1)
            spec, sizes = gaaf_sites(c.model, x) if spec is None else (spec, sizes)
            log(f"starting the Keras worker for {act} ({backend}) ...")
            workers.append(_keras_worker(backend, depth, act, x, y, steps))
            cands[f"keras/{act}"] = workers[-1]
        log(f"{model}: {len(cands)} candidates; first calls (Keras graph building, compiling) ...")
        timings = alternate(cands, rounds, warmup, progress=lambda r, n: log(f"round {r}/{n}"))
    finally:
        for worker in workers:
            worker.close()
    log("bound: convolutions (profiled) and activation kernels alone ...")
    bounds = _bounds(profiled, spec, sizes, batch_size, device)
    env = environment(device)
    env["keras_version"], env["keras_backend"] = workers[0].keras_version, workers[0].backend
    return KerasBenchResult(timings, steps * batch_size, env, bounds=bounds, settings={
        "model": model, "batch_size": batch_size, "rounds": rounds, "steps_per_sample": steps, "warmup": warmup,
        "activations": {a: ACTIVATIONS[a] for a in activations}, "keras": "Adam(1e-3), categorical cross-entropy, "
        "l2 1e-4 on conv kernels, NHWC, train_on_batch, in a process of its own", "gaaf": gaaf_settings,
    })


def _bounds(steps: "dict[str, Callable[[], None]]", spec: Any, sizes: Sequence[int], batch: int,
            device: torch.device) -> "dict[str, StepBound]":
    """Per activation: gaaf's convolutions (3 profiled steps) + that activation's kernels alone at
    every site (the GAAF model's sites; relu's kernels for relu). Empty where no site is GAAF."""
    if spec is None or not sizes:
        return {}
    floor = activation_floor(spec, sizes, device)
    return {act: StepBound(batch, conv_seconds(step, 3, device), floor.gaaf_s if act != "relu" else floor.relu_s)
            for act, step in steps.items()}


def _keras_worker(backend: str, depth: int, act: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> KerasWorker:
    """The Keras model in its own process, stepped `steps` times per call on the same images (NHWC,
    one-hot labels) with torch's thread count."""
    images = x.permute(0, 2, 3, 1).contiguous().numpy()
    one_hot = torch.nn.functional.one_hot(y, 10).float().numpy()
    return KerasWorker(backend, depth, act, images, one_hot, steps, threads=torch.get_num_threads())


def format_table(result: KerasBenchResult) -> str:
    env, st = result.environment, result.settings
    g = st["gaaf"]
    lines = [
        f"gaaf bench keras — {st['model']}, batch {st['batch_size']}, seed recipe (Adam 1e-3, l2 1e-4): Keras "
        f"{env['keras_version']} ({env['keras_backend']} backend) vs gaaf train's defaults (preset {g['preset']}, "
        f"compile {'on' if g['compile'] else 'off'}, amp {'bf16' if g['amp'] else 'off'}, channels_last "
        f"{'on' if g['channels_last'] else 'off'})",
        machine_line(env),
        f"{st['steps_per_sample']} steps per sample | median of {st['rounds']} alternating rounds after "
        f"{st['warmup']} warm-up",
        "", f"{'activation':<12}{'keras img/s':>13}{'gaaf img/s':>12}{'gaaf/keras':>12}{'paired [q1, q3]':>24}"
        f"{'1st call keras':>16}{'1st call gaaf':>15}",
    ]
    lines.append("-" * len(lines[-1]))
    for act in dict.fromkeys(k.split("/", 1)[1] for k in result.timings):
        ratio, med, q1, q3 = result.ratios(act)
        lines.append(f"{act:<12}{result.images_per_second(f'keras/{act}'):>13.1f}"
                     f"{result.images_per_second(f'gaaf/{act}'):>12.1f}{ratio:>12.2f}"
                     f"{f'{med:.2f} [{q1:.2f}, {q3:.2f}]':>24}{result.timings[f'keras/{act}'].first_call:>15.1f}s"
                     f"{result.timings[f'gaaf/{act}'].first_call:>14.1f}s")
    lines.append("gaaf/keras = gaaf train's img/s ÷ the Keras stack's (>1: gaaf is faster); paired = median [quartiles] "
                 "of the per-round ratios")
    for act, b in result.bounds.items():
        reach = b.images_per_second / result.images_per_second(f"keras/{act}")
        lines.append(f"bound {act}: convolutions {b.conv_s * 1e3:.1f} ms + activation kernels {b.act_s * 1e3:.1f} ms "
                     f"per step (everything else free) -> at most {b.images_per_second:.1f} img/s, gaaf/keras "
                     f"<= {reach:.2f}")
    return "\n".join(lines)


__all__ = ["ACTIVATIONS", "KerasBenchResult", "bench_keras", "format_table"]
