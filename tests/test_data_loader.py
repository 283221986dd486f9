"""DeviceLoader: every example once per epoch, reproducible order, equal disjoint shards."""
from __future__ import annotations

import math

import pytest
import torch

from gaaf.data import DeviceLoader, make_augment
from gaaf.errors import UserError


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    # image i is filled with the value i, so a batch tells which examples it holds
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return x, torch.arange(n)


def _epoch(loader: DeviceLoader) -> list[int]:
    seen = []
    for xb, yb in loader:
        assert xb.shape[1:] == (3, 4, 4) and xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert torch.equal(xb[:, 0, 0, 0].long(), yb)  # images and labels stay paired
        seen += yb.tolist()
    return seen


@pytest.mark.parametrize("n, bs, drop_last", [(100, 32, False), (100, 32, True), (96, 32, False), (7, 10, False)])
def test_every_example_once_per_epoch(n, bs, drop_last):
    x, y = _data(n)
    loader = DeviceLoader(x, y, bs, drop_last=drop_last, generator=torch.Generator().manual_seed(0))
    assert len(loader) == (n // bs if drop_last else math.ceil(n / bs))
    for _ in range(2):
        seen = _epoch(loader)
        assert len(seen) == (len(loader) * bs if drop_last else n)
        assert len(set(seen)) == len(seen)
        if not drop_last:
            assert sorted(seen) == list(range(n))


def test_shuffle_is_reproducible_and_changes_per_epoch():
    x, y = _data(50)
    a = DeviceLoader(x, y, 8, generator=torch.Generator().manual_seed(1))
    b = DeviceLoader(x, y, 8, generator=torch.Generator().manual_seed(1))
    ea1, ea2 = _epoch(a), _epoch(a)
    assert ea1 == _epoch(b) and ea2 == _epoch(b)
    assert ea1 != ea2 and ea1 != list(range(50))


def test_generator_state_resumes_the_same_order():
    # the trainer checkpoints generator.get_state(); restoring it replays the next epoch exactly
    x, y = _data(40)
    g = torch.Generator().manual_seed(3)
    loader = DeviceLoader(x, y, 16, generator=g, augment=make_augment(["flip"]))
    _epoch(loader)
    state = g.get_state()
    nxt = [(xb.clone(), yb.clone()) for xb, yb in loader]
    g.set_state(state)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(nxt, again))


def test_no_shuffle_keeps_order():
    x, y = _data(10)
    assert _epoch(DeviceLoader(x, y, 4, shuffle=False)) == list(range(10))


@pytest.mark.parametrize("n, w, drop_last", [(100, 4, False), (103, 4, False), (103, 4, True), (5, 8, False), (64, 3, True)])
def test_distributed_shards(n, w, drop_last):
    x, y = _data(n)
    shards = []
    for rank in range(w):
        g = torch.Generator().manual_seed(11)  # every rank: the same seed
        loader = DeviceLoader(x, y, 6, drop_last=drop_last, generator=g, rank=rank, world_size=w)
        shards.append(_epoch(loader))
        assert len(loader) == len(DeviceLoader(x, y, 6, drop_last=drop_last, rank=0, world_size=w))
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1  # same number of examples (and batches) on every rank
    everything = [i for s in shards for i in s]
    if n % w == 0:
        assert sorted(everything) == list(range(n))  # disjoint and covering
    elif drop_last:
        assert len(set(everything)) == len(everything) and n - len(everything) < w * 6 + w
    else:
        assert set(everything) == set(range(n)) and len(everything) - n < w  # padding repeats < W examples


def test_shards_are_disjoint_and_cover_with_same_seed():
    x, y = _data(120)
    seen = [set(_epoch(DeviceLoader(x, y, 7, generator=torch.Generator().manual_seed(5), rank=r, world_size=3)))
            for r in range(3)]
    assert seen[0].isdisjoint(seen[1]) and seen[1].isdisjoint(seen[2]) and seen[0].isdisjoint(seen[2])
    assert set.union(*seen) == set(range(120))


def test_augment_receives_the_batch_and_generator():
    x, y = _data(12)
    g = torch.Generator().manual_seed(0)
    calls = []

    def aug(xb, gen):
        calls.append(gen)
        return xb + 1000

    batches = list(DeviceLoader(x, y, 5, augment=aug, generator=g))
    assert len(calls) == 3 and all(c is g for c in calls)
    assert all(torch.equal(xb[:, 0, 0, 0].long() - 1000, yb) for xb, yb in batches)


@pytest.mark.parametrize("kw, exc", [
    ({"batch_size": 0}, ValueError), ({"batch_size": 2.0}, ValueError), ({"rank": 2, "world_size": 2}, ValueError),
    ({"world_size": 0}, ValueError), ({"batch_size": 20, "drop_last": True}, UserError),
    ({"generator": "seed"}, ValueError),
])
def test_bad_arguments(kw, exc):
    x, y = _data(10)
    kw = {"batch_size": 4, **kw}
    with pytest.raises(exc):
        DeviceLoader(x, y, kw.pop("batch_size"), **kw)


def test_mismatched_lengths():
    x, _ = _data(10)
    with pytest.raises(ValueError, match="must match"):
        DeviceLoader(x, torch.arange(9), 4)
