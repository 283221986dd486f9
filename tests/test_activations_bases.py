"""The base activations φ and φ' of the fused op (gaaf.activations.pointwise) at the edges of each
float type, against a machine-independent ground truth: the same definitions evaluated in 50-digit
arithmetic by mpmath (a dependency of torch, through sympy). No PyTorch kernel is the reference
here: near finfo.max ATen's own results depend on the machine (its float32 gelu is inf at
x ≥ 3.3895e38 in its vectorized loop)."""
from __future__ import annotations

import functools

import pytest
import torch

import gaaf
from gaaf.activations import pointwise, reference

mpmath = pytest.importorskip("mpmath")
mp = mpmath.mp

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
BASES = list(reference.BASES)


@functools.lru_cache(maxsize=None)
def _exact(base: str, x: float) -> "tuple[float, float, float]":
    """(φ(x), φ'(x), κ(x)) with PyTorch's definitions (leaky_relu slope 0.01, elu α = 1, softplus
    threshold 20, exact-erf gelu, relu'(0) = 0), rounded once to float64. κ = |x·φ'(x)/φ(x)| is
    φ's relative condition number: a relative error ε in an intermediate that scales x (x/√2,
    −x) moves φ by κ·ε relatively, however exactly the rest is computed (gelu(−20): κ ≈ 400)."""
    with mp.workdps(50):
        t = mp.mpf(x)  # exact: every float64 is an mpf
        sig = 1 / (1 + mp.exp(-t))
        if base == "relu":
            v, d = (t, 1) if t > 0 else (0, 0)
        elif base == "leaky_relu":
            v, d = (t, 1) if t > 0 else (t / 100, mp.mpf(1) / 100)
        elif base == "elu":
            v, d = (t, 1) if t > 0 else (mp.expm1(t), mp.exp(t))
        elif base == "tanh":
            v, d = mp.tanh(t), mp.sech(t) ** 2
        elif base == "sigmoid":
            v, d = sig, sig * (1 - sig)
        elif base == "gelu" and abs(t) > 50:  # mpmath's erfc overflows for huge arguments; here
            # 1 − Φ(|t|) < φ(t) < e^{−1250}: invisible in float64
            v, d = (t, 1) if t > 0 else (0, 0)
        elif base == "gelu":
            cdf = mp.erfc(-t / mp.sqrt(2)) / 2
            v, d = t * cdf, cdf + t * mp.exp(-t * t / 2) / mp.sqrt(2 * mp.pi)
        elif base == "silu":
            v, d = t * sig, sig * (1 + t * (1 - sig))
        elif base == "softplus":
            v, d = (t, 1) if t > 20 else (mp.log1p(mp.exp(t)), sig)
        else:
            raise AssertionError(base)
        kappa = abs(t * d / v) if v != 0 else 0
        return float(v), float(d), float(kappa)


def _points(dtype: torch.dtype) -> torch.Tensor:
    """The edges of dtype: ±max, ±max/2, ±max/K (where x·K overflows), the float resolution
    limit, the saturation points of the bases (20, 40, 88, 710, 745), tiny and subnormal
    values, and a few ordinary ones; as dtype values (duplicates from rounding removed)."""
    fi = torch.finfo(dtype)
    limit = reference.float_resolution_limit(dtype)
    mags = [fi.max, fi.max / 2, fi.max / 1e4, fi.max / 1e4 * 1.01, 1e30, 1e15, limit, limit * 1.5,
            1e4, 745.5, 710.0, 100.0, 88.5, 40.5, 39.5, 20.0, 20.5, 10.0, 5.0, 2.0, 1.0, 0.5, 1e-3,
            fi.tiny, fi.tiny / 4, fi.smallest_normal * fi.eps, 0.0]
    vals = [s * m for m in mags if m <= fi.max for s in (1.0, -1.0)]
    x = torch.tensor(vals, dtype=torch.float64).to(dtype)
    return torch.unique(x[torch.isfinite(x)])


def _ours(x: torch.Tensor, base: str) -> "tuple[torch.Tensor, torch.Tensor]":
    """φ(x) and φ'(x) as the fused op computes them (in float32 for half types), in x's dtype.
    The points come 37 times over, so that vectorized loops and their scalar tails both run (they
    may differ in the last bit: e.g. ATen's float32 log1p)."""
    xc = x.repeat(37).to(pointwise.compute_dtype(x.dtype))
    v = pointwise.base_value(xc, base)
    d = pointwise.base_slope_plus(xc, base, torch.zeros_like(xc))
    return v.to(x.dtype), d.to(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("base", BASES)
def test_base_matches_high_precision_at_the_edges(base: str, dtype: torch.dtype) -> None:
    """φ and φ' equal the exact value up to the output's rounding plus a few ulps of the compute
    dtype, times the condition number for values (absolutely: one subnormal step for values, one
    ulp of 1 for slopes)."""
    x = _points(dtype)
    v, d = _ours(x, base)
    exact = torch.tensor([_exact(base, xi) for xi in x.double().tolist()], dtype=torch.float64).repeat(37, 1)
    exact_v, exact_d, kappa = exact[:, 0].to(dtype).double(), exact[:, 1].to(dtype).double(), exact[:, 2]
    x = x.repeat(37)
    fi, fc = torch.finfo(dtype), torch.finfo(pointwise.compute_dtype(dtype))
    rtol_v, rtol_d = fi.eps + 16 * fc.eps * (1 + kappa), fi.eps + 16 * fc.eps
    # values: one subnormal step of the output, or |x|/max ≤ 1e3/max where a sigmoid's e^{−x}
    # overflows (x < −ln max) and σ, true value below 1/max, becomes 0 (silu(−710) = −3e−306)
    atol_v = max(fi.smallest_normal, 1e3 / fc.max)
    for name, ours, want, rtol, atol in (("value", v, exact_v, rtol_v, atol_v), ("slope", d, exact_d, rtol_d, fc.eps)):
        assert torch.isfinite(ours).all(), f"{base} {name} not finite at x = {x[~torch.isfinite(ours)].tolist()}"
        err = (ours.double() - want).abs()
        bad = err > rtol * want.abs() + atol
        assert not bad.any(), (f"{base} {name}: x = {x[bad].tolist()}, ours = {ours[bad].tolist()}, "
                               f"exact = {want[bad].tolist()}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_gelu_at_max_is_x(dtype: torch.dtype) -> None:
    """gelu(±max) = max, −0 and gelu'(±max) = 1, 0. Through the whole op with s ≡ 1 (x·K
    overflows: g = −0.5/K, g' = 1): outputs max (the −0.5/K is below max's rounding) and −0.5/K,
    gradients 2 and 1. 40 elements: vectorized loops and scalar tails."""
    fi = torch.finfo(dtype)
    x = torch.tensor([fi.max, -fi.max] * 20, dtype=dtype, requires_grad=True)
    y = gaaf.functional.gaaf(x, "gelu", shape="none")
    y.sum().backward()
    minus_g = torch.tensor(-0.5 / 1e4, dtype=pointwise.compute_dtype(dtype)).to(dtype).item()
    assert torch.equal(y.detach(), torch.tensor([fi.max, minus_g] * 20, dtype=dtype))
    assert torch.equal(x.grad, torch.tensor([2.0, 1.0] * 20, dtype=dtype))
    xc = x.detach().to(pointwise.compute_dtype(dtype))
    assert torch.equal(pointwise.base_value(xc, "gelu").to(dtype), torch.tensor([fi.max, -0.0] * 20, dtype=dtype))
