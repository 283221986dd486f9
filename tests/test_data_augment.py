"""Batched augmentation: shapes, exact semantics against per-image references, determinism."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gaaf.data import AUGMENTATIONS, make_augment, random_crop, random_flip, random_shift
from gaaf.data.augment import _shifted


def _batch(b: int = 16, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nearest_shift_ref(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Per-image reference: replicate-pad by the shift, then cut the window (Keras fill_mode='nearest')."""
    h, w = img.shape[-2:]
    p = max(abs(dy), abs(dx), 1)
    padded = F.pad(img[None], (p, p, p, p), mode="replicate")[0]
    return padded[:, p - dy : p - dy + h, p - dx : p - dx + w]


def test_shifted_matches_replicate_pad_reference():
    x = _batch(6, 2, 8, 10)
    dy = torch.tensor([0, 3, -3, 1, -2, 3])
    dx = torch.tensor([0, -3, 2, 3, 0, -1])
    out = _shifted(x, dy, dx, zero_fill=False)
    for i in range(6):
        assert torch.equal(out[i], _nearest_shift_ref(x[i], int(dy[i]), int(dx[i])))


def test_random_shift_nearest_fill_replicates_borders():
    x = _batch(64)
    out = random_shift(x, 0.1, _gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (3, 3, 3, 3), mode="replicate")  # (B, C, 38, 38), borders repeated
    shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
    # hit[k, b]: image b equals the window of shift k of its replicate-padded original
    hit = torch.stack([(out == padded[:, :, 3 - dy : 35 - dy, 3 - dx : 35 - dx]).flatten(1).all(1) for dy, dx in shifts])
    assert bool((hit.sum(0) == 1).all())  # exactly one shift in [-3, 3]^2 explains every image
    dy_of = torch.tensor([dy for dy, _ in shifts])[hit.float().argmax(0)]
    b = int(dy_of.argmax())  # an image moved down by dy: its top dy rows all repeat row dy (the old top row)
    dy = int(dy_of[b])
    assert dy > 0 and all(torch.equal(out[b, :, r], out[b, :, dy]) for r in range(dy))


def test_random_shift_range_and_each_image_its_own():
    x = torch.zeros(400, 1, 32, 32)
    x[:, :, 16, 16] = 1.0  # a single bright pixel reveals the shift
    out = random_shift(x, 0.1, _gen(2))
    pos = out[:, 0].flatten(1).argmax(1)
    dys, dxs = pos // 32 - 16, pos % 32 - 16
    assert set(dys.tolist()) == set(range(-3, 4)) and set(dxs.tolist()) == set(range(-3, 4))  # round(3.2) = 3


def test_random_shift_mnist_size_and_zero_range():
    x = _batch(8, 1, 28, 28)
    assert random_shift(x, 0.1, _gen()).shape == (8, 1, 28, 28)
    assert torch.equal(random_shift(x, 0.0, _gen()), x)
    with pytest.raises(ValueError):
        random_shift(x, 1.5, _gen())


def test_random_crop_keeps_values_from_padded_image():
    x = _batch(32) + 0.5  # strictly positive, so padding zeros are recognisable
    out = random_crop(x, 4, _gen(3))
    assert out.shape == x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    offsets = set()
    for i in range(len(x)):
        windows = [(oy, ox) for oy in range(9) for ox in range(9)
                   if torch.equal(out[i], padded[i, :, oy : oy + 32, ox : ox + 32])]
        assert len(windows) == 1
        offsets.add(windows[0])
    assert len(offsets) > 10  # offsets differ across the batch
    assert (out == 0).any()  # some crops reach into the zero padding


def test_random_crop_padding_zero_is_identity():
    x = _batch(4)
    assert torch.equal(random_crop(x, 0, _gen()), x)
    with pytest.raises(ValueError):
        random_crop(x, -1, _gen())


def test_random_flip_is_exact_mirror():
    x = _batch(200)
    out = random_flip(x, _gen(4))
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(len(x))])
    assert bool((flipped ^ kept).all())  # each image exactly mirrored or untouched
    assert 60 < int(flipped.sum()) < 140  # p = 0.5


@pytest.mark.parametrize("fn", [lambda x, g: random_shift(x, 0.1, g), lambda x, g: random_crop(x, 4, g),
                                lambda x, g: random_flip(x, g), make_augment(["shift", "crop", "flip"])])
def test_deterministic_for_a_seed(fn):
    x = _batch(32)
    a, b = fn(x, _gen(7)), fn(x, _gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(fn(x, _gen(7)), fn(x, _gen(8)))
    assert torch.equal(x, _batch(32))  # input untouched


def test_make_augment():
    assert AUGMENTATIONS == ("shift", "crop", "flip")
    assert make_augment([]) is None and make_augment(None) is None and make_augment("") is None
    aug = make_augment(["crop", "flip"])
    assert aug.names == ("crop", "flip") and "crop" in repr(aug)
    x = _batch(8)
    g1, g2 = _gen(9), _gen(9)
    assert torch.equal(aug(x, g1), random_flip(random_crop(x, 4, g2), g2))  # applied in the given order
    assert make_augment("crop, flip").names == ("crop", "flip")
    with pytest.raises(ValueError) as e:
        make_augment(["shift", "cutout"])
    assert "cutout" in str(e.value) and all(n in str(e.value) for n in AUGMENTATIONS)


def test_randomness_does_not_depend_on_the_data():
    # the draws come from the generator alone (on the CPU), not from the data's dtype or device:
    # a float64 copy gets exactly the same shifts and flips
    x = _batch(16)
    a = make_augment(["shift", "flip"])(x, _gen(5))
    b = make_augment(["shift", "flip"])(x.double(), _gen(5))
    assert torch.equal(a.double(), b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = _batch(16)
    for name in AUGMENTATIONS:
        aug = make_augment([name])
        assert torch.equal(aug(x, _gen(6)), aug(x.cuda(), _gen(6)).cpu())
