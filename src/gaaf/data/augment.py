"""Data augmentation as batched tensor ops on the data's device (airbench style).

Every function takes a batch x (B, C, H, W) and a CPU `torch.Generator` (or None: torch's global
RNG). The few random numbers (B per draw) are drawn on the CPU from that generator and moved to
x's device, so a given seed gives the same augmentation on any device, and the trainer can
checkpoint the generator's state. The images themselves never leave the device: each op is one
gather (or flip) plus a `where` — no per-image Python loop.

- `random_shift`: Keras ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
  fill_mode="nearest"), the GAAF seed's augmentation. Each image gets its own integer shift
  dy, dx in [-s, s] with s = round(0.1 * side) = 3 px for 32x32; pixels shifted in from outside
  repeat the border pixel. (Keras draws a real-valued shift and interpolates; integer shifts are
  the usual exact-pixel equivalent.)
- `random_crop`: He et al. 2016: zero-pad 4 px on each side, take a random 32x32 crop.
- `random_flip`: horizontal mirror with probability 0.5.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

#: names `make_augment` accepts
AUGMENTATIONS: tuple[str, ...] = ("shift", "crop", "flip")

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _randint(low: int, high: int, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """n integers in [low, high] (inclusive) drawn on the CPU, returned on `device`."""
    return torch.randint(low, high + 1, (n,), generator=generator).to(device, non_blocking=True)


def _shifted(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, zero_fill: bool) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, i - dy[b], j - dx[b]]; outside the image: the nearest border
    pixel (zero_fill=False) or 0 (zero_fill=True). One gather over flattened H*W."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device) - dy[:, None]  # (B, H) source row of each output row
    cols = torch.arange(w, device=x.device) - dx[:, None]  # (B, W)
    flat = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (B, H, W)
    out = x.reshape(b, c, h * w).gather(2, flat.reshape(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
    if zero_fill:
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
        out = out.masked_fill_(~inside[:, None], 0)
    return out


def random_shift(x: torch.Tensor, max_frac: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by its own integer (dy, dx) in [-round(max_frac*H), ...]; nearest fill."""
    if not 0.0 <= max_frac < 1.0:
        raise ValueError(f"max_frac must be in [0, 1), got {max_frac!r}")
    b, _, h, w = x.shape
    sy, sx = round(max_frac * h), round(max_frac * w)  # 3 px for 32, 3 px for 28
    dy = _randint(-sy, sy, b, generator, x.device)
    dx = _randint(-sx, sx, b, generator, x.device)
    return _shifted(x, dy, dx, zero_fill=False)


def random_crop(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad `padding` px per side, crop H x W at a random offset per image. Computed as a
    shift by (padding - offset) with zero fill: the same result without the padded buffer."""
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a whole number of pixels >= 0, got {padding!r}")
    b = x.shape[0]
    oy = _randint(0, 2 * padding, b, generator, x.device)  # crop offset within the padded image
    ox = _randint(0, 2 * padding, b, generator, x.device)
    return _shifted(x, padding - oy, padding - ox, zero_fill=True)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 0.5."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device, non_blocking=True)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


_FUNCS: dict[str, Callable[..., torch.Tensor]] = {"shift": random_shift, "crop": random_crop, "flip": random_flip}


class Compose:
    """Apply named augmentations in order: `Compose(("crop", "flip"))(x, generator)`."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._funcs = tuple(_FUNCS[n] for n in self.names)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for f in self._funcs:
            x = f(x, generator=generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({list(self.names)!r})"


def make_augment(names: Sequence[str] | str | None) -> Compose | None:
    """The augmentation for `names` (e.g. ["shift"], ["crop", "flip"], or "crop,flip"), applied
    in the order given; None for no names. Unknown names raise ValueError listing the choices."""
    if names is None:
        return None
    if isinstance(names, str):
        names = [n for n in (p.strip() for p in names.split(",")) if n]
    names = [str(n).strip().lower() for n in names]
    unknown = [n for n in names if n not in _FUNCS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from: {', '.join(AUGMENTATIONS)}")
    return Compose(names) if names else None
