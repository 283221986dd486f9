"""Where floating point runs out for GAAF: the float32/float64 resolution limit of x·K (g constant
from |x·K| ≥ 2**m on, varying just below), and bfloat16 (gaaf.activations.precision: what is left
of the sawtooth, and the warning given once per process)."""
from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
import torch

import gaaf
from data_fakes import write_fake_cifar10
from gaaf.activations import precision, reference
from gaaf.activations.pointwise import centered_sawtooth_and_slope
from gaaf.activations.precision import GAAFPrecisionWarning
from gaaf.models import activation_sites, resnet_v1
from gaaf.train import resolve_config, train

K = 1e4
_INT = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16}


def _consecutive(first: torch.Tensor, n: int) -> torch.Tensor:
    """The n floats of first's dtype from `first` (> 0) up, one ulp apart (`n` < 0: the |n| below it)."""
    steps = torch.arange(n, 0) if n < 0 else torch.arange(n)
    return (first.reshape(1).view(_INT[first.dtype]) + steps.to(_INT[first.dtype])).view(first.dtype)


def _first_at_or_above(limit: float, dtype: torch.dtype, mantissa: int) -> torch.Tensor:
    """The smallest float of `dtype` whose exact product with K is ≥ 2**mantissa."""
    x = torch.tensor(limit, dtype=torch.float64).to(dtype)
    while Fraction(float(x)) * Fraction(K) < 2**mantissa:
        x = torch.nextafter(x, torch.tensor(float("inf"), dtype=dtype))
    while Fraction(float(torch.nextafter(x, torch.zeros((), dtype=dtype)))) * Fraction(K) >= 2**mantissa:
        x = torch.nextafter(x, torch.zeros((), dtype=dtype))
    return x


def _g_and_slope(x: torch.Tensor, variant: str) -> "tuple[torch.Tensor, torch.Tensor]":
    """g(x) and g'(x) through the op itself: relu with s ≡ 1 on x < 0 is 0 + g(x), gradient 0 + g'(x)."""
    x = x.clone().requires_grad_(True)
    y = gaaf.GAAF("relu", shape="none", variant=variant)(x)
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad


# --------------------------------------------------------------------------- float32 / float64
@pytest.mark.parametrize("dtype, mantissa", [(torch.float32, 23), (torch.float64, 52)])
def test_g_is_constant_from_the_resolution_limit_and_varies_just_below(dtype, mantissa):
    limit = reference.float_resolution_limit(dtype)
    assert limit == 2**mantissa / K  # float32: 838.8608
    first = _first_at_or_above(limit, dtype, mantissa)
    above = torch.cat([_consecutive(first, 4096), torch.tensor([limit * 1.5, 1e6, 1e20], dtype=dtype)])
    below = _consecutive(first, -64)
    const = torch.tensor(-0.5, dtype=dtype) * (1.0 / K)  # g = c·(1/K) with c = −0.5
    for variant, slope in (("floor", 1.0), ("round", 0.0)):
        g, dg = _g_and_slope(-above, variant)
        assert torch.equal(g, const.expand_as(g)), f"{variant}: g not constant beyond the limit"
        assert torch.equal(dg, torch.full_like(dg, slope))  # round: g' = sign(0) = 0 once x·K is an integer
        g, dg = _g_and_slope(-below, variant)
        # just below: x·K has one fractional bit, 0 or 0.5: g takes both values (floor: −0.5/K and 0)
        assert len(torch.unique(g)) == 2 and const in g
        if variant == "round":
            assert set(torch.unique(dg).tolist()) >= {0.0, 1.0} or set(torch.unique(dg).tolist()) >= {0.0, -1.0}
    if dtype == torch.float32:
        assert float(first) == pytest.approx(838.8608, abs=1e-4) and float(below[-1]) < 838.8608


def test_resolution_thins_out_below_the_limit_one_fractional_bit_per_binade():
    # float32, K = 1e4: for 2**(23−j) ≤ |x·K| < 2**(24−j) the fractional part of x·K is a multiple of 2**−j
    for j in (1, 2, 3):
        lo = _first_at_or_above(2 ** (23 - j) / K, torch.float32, 23 - j)
        x = _consecutive(lo, 3000)
        c, _ = centered_sawtooth_and_slope(x, K, "floor")  # c = frac(x·K) − 0.5
        phases = torch.unique(c + 0.5)
        assert torch.equal(phases * 2**j, torch.round(phases * 2**j)) and len(phases) == 2**j


# --------------------------------------------------------------------------- bfloat16: what is left
def _positive_bf16() -> torch.Tensor:
    """Every positive finite bfloat16 value."""
    return torch.arange(1, 0x7F80, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)


def test_bf16_x_times_k_is_an_integer_from_8_and_has_few_phases_below():
    x = _positive_bf16()
    c, _ = centered_sawtooth_and_slope(x.float(), K, "floor")  # what the op computes for a bf16 input
    integer = c == -0.5
    assert integer[x >= 8].all() and not integer[(x >= 4) & (x < 8)].all()
    for k in range(-6, 3):
        band = (x >= 2.0**k) & (x < 2.0 ** (k + 1))
        assert len(torch.unique(c[band])) == min(2 ** (3 - k), 128)
        assert integer[band].float().mean().item() == 2.0 ** (k - 3) if k >= -4 else not integer[band].any()


def test_bf16_forward_term_rounds_away_and_floor_acts_as_its_surrogate():
    x = _positive_bf16()
    x = torch.cat([x[x.float() < 1e30], -x[x.float() < 1e30]])
    y = gaaf.GAAF("relu", shift=-1.0)(x)
    pos = x.float() >= 2**-6
    assert torch.equal(y[pos], x[pos])  # relu, x ≥ 2**−6: x itself, bitwise
    assert (y[x < 0] != 0).any()  # the negative side keeps g·s
    xf, xs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    gaaf.GAAF("relu", shift=-1.0)(xf).sum().backward()
    gaaf.GAAF("relu", shift=-1.0, variant="surrogate")(xs).sum().backward()
    torch.testing.assert_close(xf.grad, xs.grad, rtol=2**-7, atol=1e-5)
    # round: g' = 0 wherever x·K is an integer, e.g. every |x| >= 8: only relu' remains
    xr = x.clone().requires_grad_(True)
    gaaf.GAAF("relu", shape="none", variant="round")(xr).sum().backward()
    big = x.float().abs() >= 8
    assert torch.equal(xr.grad[big], (x[big] > 0).to(torch.bfloat16))


# --------------------------------------------------------------------------- the warning, once
@pytest.fixture
def fresh_warning():
    precision._reset_for_tests()
    yield
    precision._reset_for_tests()


def _caught(fn) -> "list[warnings.WarningMessage]":
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")  # not Python's once-per-location: the process-wide flag decides
        fn()
    return [w for w in got if issubclass(w.category, GAAFPrecisionWarning)]


def test_bf16_input_warns_once_per_process(fresh_warning):
    act = gaaf.GAAF("relu")
    assert issubclass(GAAFPrecisionWarning, UserWarning)
    assert _caught(lambda: act(torch.randn(8))) == []  # float32: nothing to say
    assert _caught(lambda: gaaf.GAAF("relu", variant="surrogate")(torch.randn(8, dtype=torch.bfloat16))) == []
    first = _caught(lambda: act(torch.randn(8, dtype=torch.bfloat16)))
    assert len(first) == 1 and "bfloat16 input" in str(first[0].message)
    assert _caught(lambda: [act(torch.randn(8, dtype=torch.bfloat16)) for _ in range(3)]) == []
    assert _caught(lambda: gaaf.functional.gaaf(torch.randn(8, dtype=torch.bfloat16), "tanh")) == []
    assert precision.warned()


def test_bf16_autocast_warns_once_even_for_a_float32_input(fresh_warning):
    act = gaaf.GAAF("relu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = _caught(lambda: act(torch.randn(8)))
        assert len(first) == 1 and "autocast" in str(first[0].message)
        assert _caught(lambda: act(torch.randn(8))) == []


def test_amp_note_is_one_line_for_gaaf_models_and_silences_the_op(fresh_warning):
    sites = lambda net: [m for _, m in activation_sites(net)]  # noqa: E731
    assert precision.amp_note(sites(resnet_v1(8))) is None  # relu
    assert precision.amp_note(sites(resnet_v1(8, activation="gaaf_relu", variant="surrogate"))) is None
    assert not precision.warned()
    note = precision.amp_note(sites(resnet_v1(8, activation="gaaf_relu", stem_activation="relu")))
    assert note is not None and note.startswith("gaaf: warning: GAAF in bfloat16 (--amp") and "\n" not in note
    assert _caught(lambda: gaaf.GAAF("relu")(torch.randn(8, dtype=torch.bfloat16))) == []


def test_train_amp_with_gaaf_says_it_once_at_the_start(tmp_path, capsys, fresh_warning):
    data = write_fake_cifar10(tmp_path / "data", n_train=32, n_test=16, seed=0)
    cfg = resolve_config(overrides=dict(
        model="resnet8_v1", activation="gaaf_relu", epochs=1, batch_size=16, data_dir=str(data), download=False,
        device="cpu", out=str(tmp_path / "run"), amp=True))
    caught = _caught(lambda: train(cfg, progress=False, log=False))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "GAAF in bfloat16" in ln]
    assert len(lines) == 1 and lines[0].startswith("gaaf: warning: GAAF in bfloat16 (--amp") and caught == []
