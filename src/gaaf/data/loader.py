"""`DeviceLoader`: batches from tensors already on the device (airbench style) — no worker
processes, no per-example Python, no host-to-device copy per step.

Each epoch (each `iter()`) draws one permutation of all N examples with `torch.randperm` from
`generator`, a CPU `torch.Generator` whose state the trainer checkpoints; the permutation moves to
x's device once and batches are gathered with it.

Distributed training: every rank builds the loader with the same data, the same seed and its own
`rank`. All ranks then draw the SAME permutation; rank r takes positions r, r + W, r + 2W, ...
(W = world_size) of it, so shards are disjoint. To give every rank the same number of examples
(and so the same number of batches, which collective ops need), the permutation is first made a
multiple of W long:
- drop_last=False: padded by wrapping around to its start (ceil(N / W) examples per rank; at most
  W - 1 examples are seen twice per epoch), as torch's DistributedSampler does;
- drop_last=True: cut to floor(N / W) * W (at most W - 1 examples sit out this epoch), and each
  rank also drops its last partial batch.
`batch_size` is per rank: the global batch is batch_size * world_size.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from ..errors import UserError


class DeviceLoader:
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}; they must match")
        if x.device != y.device:
            raise ValueError(f"x is on {x.device} but y is on {y.device}; put both on one device")
        for label, v, low in (("batch_size", batch_size, 1), ("world_size", world_size, 1), ("rank", rank, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{label} must be a whole number >= {low}, got {v!r}")
        if rank >= world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise ValueError(f"generator must be a CPU torch.Generator or None (its state is checkpointed), got {generator!r}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.generator = augment, generator
        self.rank, self.world_size = rank, world_size
        n = len(x)
        #: examples this rank sees per epoch (equal on every rank)
        self.per_rank = n // world_size if drop_last else math.ceil(n / world_size)
        if len(self) == 0:
            raise UserError(
                f"no batches: {n} examples, batch_size {batch_size}, world_size {world_size}, drop_last {drop_last}; "
                "use a smaller batch size, more data, or drop_last=False"
            )

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def epoch_indices(self) -> torch.Tensor:
        """Draw this epoch's indices for this rank: (per_rank,) int64 on the CPU. Advances the
        generator exactly as `__iter__` does (it is what `__iter__` calls)."""
        n, w = len(self.x), self.world_size
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        total = self.per_rank * w
        if total != n:  # pad by wrapping (drop_last=False) or cut (drop_last=True) to a multiple of W
            order = order[torch.arange(total) % n]
        return order[self.rank :: w]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.epoch_indices().to(self.x.device, non_blocking=True)
        bs = self.batch_size
        for i in range(len(self)):
            b = idx[i * bs : (i + 1) * bs]
            xb, yb = self.x[b], self.y[b]  # gathers: (B, C, H, W), (B,)
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield xb, yb
