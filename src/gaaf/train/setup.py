"""One setup path: the model, optimizer, wrappers and train step a config trains with, built here only.

    run = build_training(cfg, device, splits.in_shape, splits.num_classes)
    acc = new_accumulator(device)
    for x, y in loader:
        run.step(x, y, acc)                  # forward, loss, backward, update: gaaf.train.step
    evaluate(run.eval_net, batches, amp=cfg.amp, channels_last=run.channels_last)

`gaaf train` (the engine), `gaaf bench train` / `gpu`, the probe-overhead bench and the sweep's
time estimate all build through `build_training`, so a benchmark times the very step training
runs. `gaaf eval` and config validation (on the meta device) build the model alone with
`build_model_for` (defined next to the config, which validation needs it for).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .compile_rule import resolve_compile
from .config import TrainConfig, build_model_for
from .distributed import DistInfo
from .step import TrainStep, build_optimizer, make_train_step

#: evaluation keeps no activations for a backward pass: it runs at least this many images per batch
MIN_EVAL_BATCH = 256


@dataclass
class Training:
    """Everything one training run steps: built by `build_training` from one config."""

    cfg: TrainConfig
    model: nn.Module          # the bare model: state dicts, probes, parameter counts
    net: nn.Module            # what the train step calls: model, DDP(model), torch.compile of either
    eval_net: nn.Module       # what evaluation calls: never DDP (each rank evaluates its own slice)
    optimizer: torch.optim.Optimizer
    step: TrainStep           # step(x, y, acc): see gaaf.train.step.make_train_step
    channels_last: bool       # the model's weights and every 4-D batch in channels_last memory format

    @property
    def eval_batch_size(self) -> int:
        return eval_batch_size(self.cfg.batch_size)


def eval_batch_size(batch_size: int) -> int:
    """Images per evaluation batch for a run of `batch_size`: bigger batches, same result."""
    return max(batch_size, MIN_EVAL_BATCH)


def uses_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """cfg.channels_last, where None means: on CUDA only."""
    return cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"


def build_training(
    cfg: TrainConfig,
    device: torch.device,
    in_shape: Sequence[int],
    num_classes: int,
    *,
    info: DistInfo = DistInfo(),
    state: Mapping[str, Any] | None = None,
) -> Training:
    """`cfg`'s model on `device` (initialised from torch's global RNG, as seeded by the caller), its
    optimizer and train step.

    state: a checkpoint (`gaaf.train.load_checkpoint`) whose model and optimizer states are loaded
    before anything wraps the model. info: under torchrun (`info.enabled`) the model trains wrapped
    in DistributedDataParallel. cfg.compile (true, or "auto" for a long run:
    `gaaf.train.compile_rule`) wraps it in torch.compile; cfg.channels_last (None: on
    CUDA) converts the weights and makes the step convert each batch."""
    model = build_model_for(cfg, in_shape, num_classes).to(device)
    channels_last = uses_channels_last(cfg, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    net: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    eval_net: nn.Module = model
    if resolve_compile(cfg.to_dict()):  # a validated config holds a bool; "auto" is resolved here otherwise
        net = torch.compile(net)
        eval_net = torch.compile(model) if info.enabled else net
    step = make_train_step(net, optimizer, cfg, channels_last=channels_last)
    return Training(cfg, model, net, eval_net, optimizer, step, channels_last)
