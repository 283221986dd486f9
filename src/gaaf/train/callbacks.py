"""Callbacks the engine adds itself (TensorBoard, probes) and the state every callback sees.

Protocol: any object with optional methods

    on_train_start(state)            once, after the model is built (and a resume restored)
    on_epoch_end(state, row)         after each epoch's files are written; row = the metrics.csv row
    on_train_end(state, summary)     once, after summary.json is written

Callbacks run on every rank; `state.is_main` tells them whether to write files.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .config import TrainConfig
from .probes import DEFAULT_BINS, DEFAULT_EVERY, DEFAULT_RANGE, PROBES_FILE, ActivationProbe


@dataclass
class TrainState:
    model: nn.Module                 # the unwrapped model (no DDP / compile wrapper)
    cfg: TrainConfig
    out_dir: Path
    device: torch.device
    optimizer: torch.optim.Optimizer
    epoch: int = 0                   # last finished epoch (0 before the first)
    rank: int = 0
    world_size: int = 1
    splits: Any = None               # gaaf.data Splits (device-resident tensors)
    extra: dict[str, Any] = field(default_factory=dict)  # free space for callbacks

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def call(callbacks: list[Any], method: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(*args)


def check_optional_features(cfg: TrainConfig) -> None:
    """Fail before any work when --tensorboard cannot be honoured (the optional package is missing)."""
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError("--tensorboard needs the tensorboard package: pip install 'gaaf[tensorboard]' (or drop --tensorboard)")


class TensorBoardCallback:
    """Scalars of every metrics row under OUT/tensorboard (rank 0 only)."""

    def __init__(self) -> None:
        self.writer: Any = None

    def on_train_start(self, state: TrainState) -> None:
        if state.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(state.out_dir / "tensorboard"))

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_second"):
            self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def on_train_end(self, state: TrainState, summary: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ProbeCallback:
    """Engine callback: probes the training batches, writes OUT/probes.json after every epoch (rank 0)."""

    def __init__(self, probe: ActivationProbe, out_dir: "str | Path") -> None:
        self.probe, self.path = probe, Path(out_dir) / PROBES_FILE

    def on_train_start(self, state: Any) -> None:
        if getattr(state, "epoch", 0) > 0:  # a resumed run: keep the finished epochs' records
            self.probe.load_previous(self.path, state.epoch)
        self.probe.step_in_epoch = self.probe.samples = 0

    def on_epoch_end(self, state: Any, row: Any) -> None:
        self.probe.end_epoch(state.epoch)  # every rank: the all-reduce is collective
        if getattr(state, "is_main", True):
            self.probe.write(self.path)

    def on_train_end(self, state: Any, summary: Any) -> None:
        self.probe.close()


def make_probe_callback(state: Any) -> ProbeCallback:
    """Build the probe from ``state.model`` and the optional ``cfg.probe_every``, ``probe_bins``,
    ``probe_range``, ``probe_saturation`` fields (defaults when absent)."""
    cfg = state.cfg
    probe = ActivationProbe(
        state.model,
        every=getattr(cfg, "probe_every", None) or DEFAULT_EVERY,
        bins=getattr(cfg, "probe_bins", None) or DEFAULT_BINS,
        range=getattr(cfg, "probe_range", None) or DEFAULT_RANGE,
        saturation=getattr(cfg, "probe_saturation", None),
    )
    return ProbeCallback(probe, state.out_dir)
