"""DistributedDataParallel plumbing for `torchrun --nproc_per_node N -m gaaf train ...`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; when WORLD_SIZE > 1 we join a process group
(gloo on CPU, nccl on CUDA). Each rank trains on its shard of every batch, metrics are summed
across ranks with all_reduce, and only rank 0 writes files.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto → cuda if available else cpu; cuda without a GPU is a user error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device {name!r}; choose one of: auto, cpu, cuda")


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by torchrun with WORLD_SIZE > 1; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        # The store torchrun points us at may outlive a restart (--max-restarts): keys of the failed
        # attempt (a dead rank's address) must not be read by the next one, so each attempt gets its own
        # prefix in it.
        store, _, _ = next(dist.rendezvous("env://"))
        attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        store = dist.PrefixStore(f"gaaf/attempt{attempt}/", store)
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank), device


def shutdown(info: DistInfo, *, finished: bool = True) -> None:
    """Leave the process group.

    After a finished run every rank first waits for the others (no rank tears down its sockets
    while another still has a collective in flight), and the objects that still hold the group
    (DDP's reducer, the wrapped model, in reference cycles) are collected *before* the group is
    destroyed: a gloo group destroyed only at interpreter exit can abort the process ("terminate
    called without an active exception") after training has succeeded. After a failure there is
    no barrier: the other ranks may be gone.
    """
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In place sum over ranks (no-op on a single process). float64 works on gloo and nccl."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value of `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """[rank 0's obj, rank 1's obj, ...] on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def run_on_main(fn: Callable[[], Any], info: DistInfo) -> Any:
    """Run `fn` on rank 0 only; every rank then returns its (small, picklable) result or raises its
    error, so a refused --out or a failed download stops all ranks instead of leaving them waiting."""
    if not info.enabled:
        return fn()
    result, error = None, None
    if info.is_main:
        try:
            result = fn()
        except (UserError, ValueError, OSError) as e:
            error = e
    result, message = broadcast_object((result, None if error is None else str(error)), info)
    if error is not None:
        raise error
    if message is not None:
        raise UserError(message)
    return result


def sync_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank before evaluating,
    so all ranks evaluate the very model rank 0 checkpoints."""
    if info.enabled:
        for b in model.buffers():
            dist.broadcast(b, src=0)
