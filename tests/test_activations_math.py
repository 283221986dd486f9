"""The fused GAAF op against autograd of the reference composition (plain eager math; the compiled
kernels are checked against this same math in test_activations_fused.py)."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gaaf
from gaaf.activations import fused, reference
from gaaf.activations.fused import GAAFFn
from gaaf.activations.spec import GAAFSpec

BASES = list(reference.BASES)
VARIANTS = list(reference.VARIANTS)


def _bump(x: torch.Tensor) -> torch.Tensor:  # a user callable shape (pointwise)
    return torch.exp(-0.5 * x * x) * (1.0 + 0.25 * torch.sin(x))


SHAPES = {
    "sigmoid": dict(shape="sigmoid", shift=-1.0, slope=1.5),
    "gaussian": dict(shape="gaussian", center=0.25, width=3.0),
    "none": dict(shape="none"),
    "callable": dict(shape=_bump),
}
ALL_SPECS = [
    GAAFSpec.build(base, variant=variant, frequency=k, **SHAPES[shape])
    for base, shape, variant in itertools.product(BASES, SHAPES, VARIANTS)
    for k in (1e4,)
]


@pytest.fixture(autouse=True)
def _plain_eager():
    fused.set_eager_compile(False)
    yield
    fused.set_eager_compile(None)


def _away_from_jumps(frequency: float, n: int, lo: float, hi: float, seed: int, variant: str) -> torch.Tensor:
    """float64 points in [lo, hi] whose x·K sits well inside a sawtooth tooth (and, for "round",
    away from the half-integer where g' flips), and away from the kinks of relu/softplus."""
    gen = torch.Generator().manual_seed(seed)
    whole = torch.randint(int(lo * frequency), int(hi * frequency), (n,), generator=gen, dtype=torch.float64)
    if variant == "floor":
        frac = 0.2 + 0.6 * torch.rand(n, generator=gen, dtype=torch.float64)
    else:  # [0.1, 0.4] ∪ [0.6, 0.9]
        u = 0.1 + 0.3 * torch.rand(n, generator=gen, dtype=torch.float64)
        frac = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, u, u + 0.5)
    x = (whole + frac) / frequency
    return x[(x.abs() > 0.05) & ((x - 20.0).abs() > 0.05)]


def _spec_kwargs(spec: GAAFSpec) -> dict:
    return dict(base=spec.base, shape=spec.shape, frequency=spec.frequency, variant=spec.variant,
                **spec.shape_params)


def _value_and_grad(fn, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    (gx,) = torch.autograd.grad(y, x, grad)
    return y.detach(), gx


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.describe())
def test_matches_reference_autodiff_float64(spec):
    x = _away_from_jumps(spec.frequency, 4000, -30.0, 30.0, seed=1, variant=spec.variant)
    gy = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y_f, g_f = _value_and_grad(lambda t: gaaf.functional.gaaf_from_spec(t, spec), x, gy)
    y_r, g_r = _value_and_grad(lambda t: reference.gaaf_reference(t, **_spec_kwargs(spec)), x, gy)
    assert (y_f - y_r).abs().max().item() <= 1e-12
    assert (g_f - g_r).abs().max().item() <= 1e-12


# The surrogate's backward (φ' + s) is by design not the derivative of its forward (φ): gradcheck
# does not apply; test_activations_surrogate.py checks it against the limit K → ∞ and gradgradcheck.
@pytest.mark.parametrize("spec", [GAAFSpec.build(s.base, s.shape, 10.0, s.variant, **s.shape_params) for s in ALL_SPECS
                                  if s.variant != "surrogate"], ids=lambda s: s.describe())
def test_gradcheck(spec):
    # K = 10: a tooth is 0.1 wide and the points sit ≥ 0.01 inside it, far beyond gradcheck's eps
    x = _away_from_jumps(10.0, 12, -3.0, 3.0, seed=3, variant=spec.variant).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: GAAFFn.apply(t, spec), (x,), eps=1e-6, atol=1e-7)


def test_double_backward_matches_reference():
    spec = GAAFSpec.build("tanh", "gaussian", 10.0, width=2.0)
    x = _away_from_jumps(10.0, 20, -3.0, 3.0, seed=4, variant="floor")

    def second(fn):
        t = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(t).sum(), t, create_graph=True)
        return torch.autograd.grad(g.sum(), t)[0]

    torch.testing.assert_close(second(lambda t: GAAFFn.apply(t, spec)),
                               second(lambda t: reference.gaaf_reference(t, **_spec_kwargs(spec))),
                               rtol=0, atol=1e-12)


def test_callable_shape_without_grad_and_broadcasting():
    x = _away_from_jumps(1e4, 50, -3.0, 3.0, seed=5, variant="floor")
    for shape in (lambda t: torch.ones_like(t).detach(), lambda t: torch.tensor(0.75, dtype=t.dtype)):
        gy = torch.ones_like(x)
        y_f, g_f = _value_and_grad(lambda t: gaaf.functional.gaaf(t, "silu", shape), x, gy)
        y_r, g_r = _value_and_grad(lambda t: reference.gaaf_reference(t, "silu", shape), x, gy)
        torch.testing.assert_close((y_f, g_f), (y_r, g_r), rtol=0, atol=1e-12)


def test_callable_shape_with_wrong_shape_raises():
    with pytest.raises(ValueError, match="does not broadcast"):
        gaaf.functional.gaaf(torch.randn(4, 3), shape=lambda t: t[:2])
    with pytest.raises(ValueError, match="must return a tensor"):
        gaaf.functional.gaaf(torch.randn(4), shape=lambda t: 1.0)


def test_saves_exactly_the_input_for_backward():
    def saved_by(fn, x):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            fn(x)
        return saved

    for dtype, shape in itertools.product((torch.float32, torch.bfloat16), ("sigmoid", "gaussian", "none", _bump)):
        x = torch.randn(8, 5, dtype=dtype, requires_grad=True)
        saved = saved_by(lambda t: gaaf.functional.gaaf(t, "gelu", shape), x)
        assert len(saved) == 1 and saved[0].shape == x.shape and saved[0].dtype == dtype
        assert saved[0].data_ptr() == x.data_ptr()
    # the reference keeps several input-sized intermediates: that is what the fused op saves
    assert len(saved_by(lambda t: reference.gaaf_reference(t, "gelu"), x)) > 2


# --------------------------------------------------------------------------- dtypes and layouts
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_preserved_and_half_computed_in_float32(dtype):
    x = (torch.randn(64, 33) * 4).to(dtype).requires_grad_(True)
    y = gaaf.GAAF("tanh", "gaussian", width=3.0)(x)
    y.backward(torch.ones_like(y))
    assert y.dtype == dtype and x.grad.dtype == dtype
    x32 = x.detach().to(torch.float64 if dtype == torch.float64 else torch.float32).requires_grad_(True)
    y32 = reference.gaaf_reference(x32, "tanh", "gaussian", width=3.0)
    y32.backward(torch.ones_like(y32))
    # one rounding to the output dtype, from float32 math
    torch.testing.assert_close(y.float(), y32.to(dtype).float(), rtol=0, atol=torch.finfo(dtype).eps)
    torch.testing.assert_close(x.grad.float(), x32.grad.to(dtype).float(), rtol=torch.finfo(dtype).eps, atol=1e-6)


def _layouts():
    base = torch.randn(4, 6, 5, 7)
    return {
        "contiguous": base,
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "permuted": base.permute(2, 0, 3, 1),
        "sliced": base[:, ::2, 1:, :],
        "transposed_2d": torch.randn(30, 11).t(),
        "offset": torch.randn(500)[7:307].view(10, 30),
        "expanded": torch.randn(6, 1).expand(6, 9),
        "scalar": torch.tensor(0.3),
        "empty": torch.randn(0, 3),
    }


@pytest.mark.parametrize("name", list(_layouts()))
def test_layout_preserved_like_empty_like(name):
    x = _layouts()[name].clone() if name == "scalar" else _layouts()[name]
    x.requires_grad_(True)
    y = gaaf.GAAF("relu", shift=-1.0)(x)
    assert y.shape == x.shape and y.stride() == torch.empty_like(x).stride()
    gy = torch.randn(y.shape).expand_as(y) if name == "expanded" else torch.randn_like(y)
    y.backward(gy)
    assert x.grad.shape == x.shape
    xr = x.detach().clone().requires_grad_(True)
    yr = reference.gaaf_reference(xr, "relu", "sigmoid", shift=-1.0)
    yr.backward(gy)
    torch.testing.assert_close((y, x.grad), (yr, xr.grad), rtol=1e-6, atol=1e-6)


def test_channels_last_grad_keeps_channels_last():
    x = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = gaaf.get_activation("gaaf_relu")(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


def test_autocast_bfloat16_cpu():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 16)
    act = gaaf.get_activation("gaaf_tanh")
    x = torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        y = act(h)
        assert h.dtype == y.dtype == torch.bfloat16
        assert act(x).dtype == torch.float32  # float32 in, float32 out, also under autocast
    y.float().square().sum().backward()
    assert lin.weight.grad.dtype == torch.float32 and torch.isfinite(lin.weight.grad).all()
    ref = reference.gaaf_reference(h.detach().float(), "tanh", "gaussian", width=3.0)
    torch.testing.assert_close(y.float(), ref.to(torch.bfloat16).float(), rtol=0, atol=2**-8)


def test_vmap_and_func_grad():
    spec = GAAFSpec.build("softplus", "sigmoid", 100.0, shift=0.5)
    x = _away_from_jumps(100.0, 40, -3.0, 3.0, seed=6, variant="floor")[:24].view(4, 6)
    g = torch.func.vmap(torch.func.grad(lambda t: GAAFFn.apply(t, spec).sum()))(x)
    xr = x.clone().requires_grad_(True)
    reference.gaaf_reference(xr, **_spec_kwargs(spec)).sum().backward()
    torch.testing.assert_close(g, xr.grad, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- finite in, finite out
FINITE_SPECS = [
    GAAFSpec.build(base, variant=variant, **SHAPES[shape])
    for base, shape, variant in itertools.product(BASES, ("sigmoid", "gaussian", "none"), VARIANTS)
] + [GAAFSpec.build("relu", "sigmoid", 1e30, shift=4.0), GAAFSpec.build("tanh", "gaussian", 1e-3, width=1e-3)]


def _extremes(dtype: torch.dtype) -> "list[float]":
    fi = torch.finfo(dtype)
    limit = reference.float_resolution_limit(dtype)
    vals = [fi.max, fi.min, fi.tiny, -fi.tiny, fi.smallest_normal / 4, 0.0, -0.0, 1e30, -1e30, limit, -limit,
            limit * 1.5, fi.max / 1e4, fi.max / 1e4 * 1.01, 20.0, 88.0, -88.0, 1e4]
    return [v for v in vals if abs(v) <= fi.max]


def _check_finite(values: "list[float]", dtype: torch.dtype) -> None:
    x = torch.tensor(values, dtype=torch.float64).to(dtype)
    x = x[torch.isfinite(x)].requires_grad_(True)
    for spec in FINITE_SPECS:
        x.grad = None
        y = GAAFFn.apply(x, spec)
        y.backward(torch.ones_like(y))
        bad = ~(torch.isfinite(y) & torch.isfinite(x.grad))
        assert not bad.any(), f"{spec.describe()} {dtype}: non-finite at x = {x[bad].tolist()}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_at_extremes(dtype):
    _check_finite(_extremes(dtype), dtype)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=16))
def test_finite_in_finite_out_float32(values):
    _check_finite(values, torch.float32)
    _check_finite(values, torch.bfloat16)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=16))
def test_finite_in_finite_out_float64(values):
    _check_finite(values, torch.float64)
    _check_finite([v for v in values if abs(v) <= 65504.0], torch.float16)


def test_beyond_float_resolution_g_is_constant():
    """|x| ≥ float_resolution_limit: every x·K is an integer, g ≡ −0.5/K, forward = φ(x) − 0.5·s(x)/K.
    Where x·K overflows, the reference is NaN and the fused op continues the same rule."""
    for dtype in (torch.float32, torch.float64):
        limit = reference.float_resolution_limit(dtype)
        big = torch.finfo(dtype).max / 2
        x = torch.tensor([limit, -limit * 3, limit * 1e3, big, -big], dtype=dtype)
        spec = GAAFSpec.build("tanh", "sigmoid", shift=0.5)
        s = torch.sigmoid(x + 0.5)
        expected = torch.tanh(x) - 0.5 * s / spec.frequency
        torch.testing.assert_close(GAAFFn.apply(x, spec), expected, rtol=0, atol=0)
        assert torch.isnan(reference.gaaf_reference(x[-2:], "tanh", "sigmoid", shift=0.5)).all()


def test_nan_and_inf_inputs():
    x = torch.tensor([float("nan"), float("inf"), -float("inf")], requires_grad=True)
    y = gaaf.GAAF("relu")(x)
    assert torch.isnan(y[0]) and y[1] == float("inf") and y[2] == 0.0
