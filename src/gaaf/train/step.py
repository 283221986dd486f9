"""The per-step hot path and evaluation, kept apart from the loop so they can be timed alone.

    step = make_train_step(model, optimizer, cfg)
    acc = new_accumulator(device)            # (3,) float64: [Σ loss·n, Σ correct, Σ n]
    for x, y in loader:
        step(x, y, acc)                      # no .item(), no host sync
    loss_sum, correct, n = acc.tolist()      # one sync per epoch

A benchmark can time `step` in isolation (`gaaf.bench`) exactly as the engine runs it.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig

TrainStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


def conv_kernels(model: nn.Module) -> list[torch.Tensor]:
    """Weights of every convolution: what Keras' `kernel_regularizer=l2(...)` touches in the seed
    (biases, BatchNorm and the final Dense layer are not regularised)."""
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [m.weight for m in model.modules() if isinstance(m, convs)]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (Keras' epsilon and betas) or SGD over the trainable parameters.

    With every parameter on CUDA the fused kernels are used (one launch per step instead of a few per
    tensor); older torch without `fused=` falls back to the default implementation. The choice belongs to
    this machine: loading a checkpoint saved elsewhere (its param groups carry `fused`/`foreach`) keeps it."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.is_cuda for p in params)
    if cfg.optimizer == "adam":
        cls, kw = torch.optim.Adam, dict(lr=cfg.lr, betas=(cfg.adam_betas[0], cfg.adam_betas[1]), eps=cfg.adam_eps,
                                         weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        cls, kw = torch.optim.SGD, dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of: adam, sgd")
    optimizer = None
    if fused:
        try:
            optimizer = cls(params, fused=True, **kw)
        except (TypeError, RuntimeError):  # torch without fused=, or a dtype/device it does not cover
            optimizer = None
    if optimizer is None:
        optimizer = cls(params, **kw)
    chosen = {k: optimizer.param_groups[0].get(k) for k in ("fused", "foreach")}

    def keep_implementation(opt: torch.optim.Optimizer) -> None:
        for group in opt.param_groups:
            group.update(chosen)

    if hasattr(optimizer, "register_load_state_dict_post_hook"):  # torch >= 2.1
        optimizer.register_load_state_dict_post_hook(keep_implementation)
    return optimizer


def new_accumulator(device: torch.device | str) -> torch.Tensor:
    """Device-resident epoch sums [Σ loss·n, Σ correct, Σ n] (float64: exact counts up to 2^53)."""
    return torch.zeros(3, dtype=torch.float64, device=device)


def autocast(device: torch.device | str, enabled: bool) -> torch.autocast:
    """bf16 autocast on `device` when `enabled` (a no-op context otherwise); re-enterable."""
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled)


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    *,
    channels_last: bool = False,
) -> TrainStep:
    """A closure `step(x, y, acc)`: forward, cross-entropy loss, backward, + 2·l2·w on the conv kernels'
    grads, gradient clipping (cfg.clip_grad_norm > 0), update, and add this batch's [loss·n, correct, n]
    to `acc` in place — all on the device.

    Clipping (torch's `clip_grad_norm_`, no host sync): g ← g·min(1, C / (‖g‖ + 1e-6)), g every trainable
    parameter's gradient (l2 term in, the optimizer's weight decay not); under DDP, after the averaging.

    Keras minimises CE + l2·Σw² over the regularised kernels; its gradient w.r.t. w is 2·l2·w, so adding
    that to each kernel's grad after backward (one `_foreach_add_`) gives the same update without the
    ~40 extra small ops (and their backward) per step outside any compiled graph. Under DDP the grads are
    already all-reduced (averaged) when backward returns and the weights are identical on every rank, so
    the added term is the same everywhere — as it would be after averaging CE + l2 grads. AMP autocasts
    the forward only (bf16, no loss scaling): params and grads stay float32.

    x: (B, C, H, W) or (B, D) float, y: (B,) int64, acc: (3,) float64 from `new_accumulator`.
    """
    device = next(model.parameters()).device
    amp_context = autocast(device, bool(cfg.amp))  # built once; re-entered every step
    l2 = float(cfg.l2)
    # resolved once: the unwrapped kernels (a DDP/compiled wrapper shares the same tensors)
    kernels = [w for w in conv_kernels(getattr(model, "module", model)) if w.requires_grad] if l2 > 0 else []
    clip = float(cfg.clip_grad_norm)
    params = [p for p in model.parameters() if p.requires_grad] if clip > 0 else []

    def add_l2_grad() -> None:
        grads = []
        for w in kernels:
            if w.grad is None:  # a kernel the forward did not use: its grad is the l2 term alone
                w.grad = torch.zeros_like(w)
            grads.append(w.grad)
        with torch.no_grad():
            torch._foreach_add_(grads, kernels, alpha=2.0 * l2)

    def step(x: torch.Tensor, y: torch.Tensor, acc: torch.Tensor) -> None:
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp_context:
            logits = model(x)                                    # (B, classes)
            loss = F.cross_entropy(logits.float(), y)            # mean over the batch; also what is reported
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if kernels:
            add_l2_grad()
        if params:
            torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        optimizer.step()
        with torch.no_grad():
            n = y.shape[0]  # a host int: adding it launches a kernel, copies nothing back
            correct = (logits.argmax(dim=1) == y).sum().to(torch.float64)
            acc[:2] += torch.stack([loss.detach().to(torch.float64) * n, correct])
            acc[2] += n

    return step


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    amp: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Sum [Σ loss·n, Σ correct, Σ n] over `batches` in eval mode; restores the previous mode.

    Returns the device-resident (3,) float64 sums (the caller all-reduces / divides)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    acc = new_accumulator(device)
    try:
        for x, y in batches:
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            correct = (logits.argmax(dim=1) == y).sum()
            acc[:2] += torch.stack([loss.to(torch.float64), correct.to(torch.float64)])
            acc[2] += y.shape[0]
    finally:
        model.train(was_training)
    return acc
