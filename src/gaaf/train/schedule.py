"""The learning rate of every step, and where a run stops: `lr_schedule` counted in epochs or in
iterations (`lr_schedule_unit`), a linear warm-up (`warmup_iterations`), and `max_iterations`.

    lr_schedule = [[m1, f1], [m2, f2], ...]     milestones m increasing, factors f > 0
    lr(t) = lr · f_k · w(i),   k the last step with m_k < t   (f = 1 while no milestone is passed)
    w(i) = min(1, i / W)       i the iteration (1-based), W = warmup_iterations (W = 0: w = 1)

t counts from 1. With ``lr_schedule_unit = "epoch"`` t is the epoch being trained: "after m finished
epochs the rate is lr·f", set once per epoch (the seed's Keras schedule, see `config.SEED_LR_SCHEDULE`).
With ``"iteration"`` t is the iteration (optimizer step) being taken, counted over the whole run, and
the rate is set before every step. He et al. 2016 (CIFAR-10): lr 0.1, ``[[32000, 0.1], [48000, 0.01]]``
in iterations, i.e. iterations 1..32000 at 0.1, 32001..48000 at 0.01, 48001..64000 at 0.001.
A constant warm-up is a first step below 1: ``[[0, 0.1], [400, 1.0], ...]`` runs iterations 1..400
at lr·0.1 (He et al.'s ResNet-110 started so: 0.01 for about 400 iterations, then 0.1). The linear
warm-up w (Goyal et al. 2017's "gradual warm-up") counts iterations whatever the schedule's unit:
W = 400 runs iteration 1 at lr/400, iteration 200 at lr/2, and 400 on at the full rate.

``max_iterations`` (0: no limit) stops the run after that many iterations in all, or after
``epochs`` epochs, whichever comes first. The epoch in which it stops is cut short: it is still a
row of metrics.csv, over the steps it took. An epoch has ``len(loader)`` steps (⌈N / batch⌉ on one
process); the run's iteration count is saved in every checkpoint, so a resume continues it.
"""
from __future__ import annotations

from typing import Protocol, Sequence


class Schedule(Protocol):
    """The TrainConfig fields a schedule reads (config imports validate, which imports UNITS from here)."""

    lr: float
    lr_schedule: list[list[float]]
    lr_schedule_unit: str
    warmup_iterations: int
    max_iterations: int
    epochs: int

#: what lr_schedule's milestones count
UNITS: tuple[str, ...] = ("epoch", "iteration")


def lr_factor(schedule: Sequence[Sequence[float]], t: int) -> float:
    """The factor of the last step [m, f] with m < t (1.0 when there is none); t counts from 1."""
    factor = 1.0
    for milestone, f in schedule:
        if t > milestone:
            factor = f
    return factor


def warmup_factor(warmup_iterations: int, iteration: int) -> float:
    """min(1, iteration / warmup_iterations); 1 without a warm-up (0)."""
    if warmup_iterations <= 0 or iteration >= warmup_iterations:
        return 1.0
    return iteration / warmup_iterations


def lr_at(cfg: Schedule, epoch: int, iteration: int | None = None) -> float:
    """The learning rate of `iteration` (1-based over the run) in `epoch` (1-based) under `cfg`.

    Seed preset (epochs): epoch 81 → 1e-3, epoch 82 → 1e-4 (Keras' 0-based `epoch > 80`).
    he2016 preset (iterations): iteration 32000 → 0.1, 32001 → 0.01, 48001 → 0.001."""
    needs_iteration = cfg.lr_schedule_unit == "iteration" or cfg.warmup_iterations > 0
    if needs_iteration and iteration is None:
        raise ValueError("lr_schedule or warmup_iterations counts iterations: pass the iteration")
    t = iteration if cfg.lr_schedule_unit == "iteration" else epoch
    lr = cfg.lr * lr_factor(cfg.lr_schedule, t)  # type: ignore[arg-type]
    return lr * warmup_factor(cfg.warmup_iterations, iteration) if cfg.warmup_iterations > 0 else lr  # type: ignore[arg-type]


def steps_in_epoch(cfg: Schedule, iterations_done: int, steps_per_epoch: int) -> int:
    """Steps the next epoch takes: all `steps_per_epoch`, or what max_iterations leaves (0: done)."""
    if not cfg.max_iterations:
        return steps_per_epoch
    return max(0, min(steps_per_epoch, cfg.max_iterations - iterations_done))


def epoch_lrs(cfg: Schedule, epoch: int, iterations_done: int, steps: int) -> list[float]:
    """The learning rate of each of the `steps` steps of `epoch`, the run having taken
    `iterations_done` steps before it."""
    return [lr_at(cfg, epoch, iterations_done + i + 1) for i in range(steps)]


def finished(cfg: Schedule, epoch: int, iterations: int) -> bool:
    """True when a run that has finished `epoch` epochs and `iterations` steps has nothing left to train."""
    return epoch >= cfg.epochs or (cfg.max_iterations > 0 and iterations >= cfg.max_iterations)
