"""variant "surrogate", the K → ∞ limit of GAAF: forward exactly φ(x) (PyTorch's own op, bitwise),
backward φ'(x) + s(x). The float64 match with autograd of the reference and finite-in/finite-out at
the extremes are in test_activations_math.py (parametrized over every variant), the Keras twin in
test_keras.py; here what is the surrogate's own: the bitwise forward, the limit, the double
backward and the compiled paths."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gaaf
from gaaf.activations import fused, kernels, reference
from gaaf.activations.fused import GAAFFn
from gaaf.activations.spec import GAAFSpec

BASES = list(reference.BASES)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SHAPES = {"sigmoid": dict(shape="sigmoid", shift=-1.0, slope=1.5), "gaussian": dict(shape="gaussian", width=3.0),
          "none": dict(shape="none")}


@pytest.fixture(autouse=True)
def _plain_eager():
    fused.set_eager_compile(False)
    yield
    fused.set_eager_compile(None)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns (so that −0 and +0 differ, and NaN equals NaN)."""
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _points(dtype: torch.dtype) -> torch.Tensor:
    """1000 ordinary values (vectorized loops and scalar tails) and the edges of dtype."""
    fi = torch.finfo(dtype)
    edges = [fi.max, fi.max / 2, 1e30, 745.5, 88.5, 40.5, 39.5, 20.5, 20.0, 1.0, fi.tiny, 0.0]
    x = torch.cat([torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 8,
                   torch.tensor([s * m for m in edges for s in (1.0, -1.0)], dtype=torch.float64)])
    x = x.to(dtype)
    return x[torch.isfinite(x)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("base", BASES)
def test_forward_is_the_plain_base_bitwise(base, dtype):
    x = _points(dtype)
    plain = reference.BASES[base](x)  # torch.relu, F.gelu, ...: nn.ReLU's, nn.GELU's output
    y = gaaf.GAAF(base, variant="surrogate")(x.clone().requires_grad_(True)).detach()
    assert torch.isfinite(y).all()
    # ATen's own float32 gelu may be inf near ±max (machine-dependent); the surrogate's is x there
    fin = torch.isfinite(plain)
    assert torch.equal(_bits(y[fin]), _bits(plain[fin]))
    assert torch.equal(y[~fin], x[~fin])
    channels_last = x[:960].view(4, 6, 5, 8).contiguous(memory_format=torch.channels_last)
    for t in (channels_last, x[:1000].view(40, 25)[:, 1::3].t()):  # dense, and not dense
        yt, pt = gaaf.GAAF(base, variant="surrogate")(t), reference.BASES[base](t)
        assert torch.equal(_bits(yt), _bits(pt)) and yt.stride() == pt.stride()


def test_forward_never_takes_a_compiled_kernel(monkeypatch):
    """Even with the eager kernels on and an input large enough for them, the forward is φ's own op
    (a compiled re-derivation of φ could differ in the last bit)."""
    fused.set_eager_compile(True)
    monkeypatch.setattr(kernels, "_kernels", lambda spec, x: pytest.fail("the forward reached a compiled kernel"))
    x = torch.randn(kernels.EAGER_COMPILE_MIN_NUMEL * 2) * 8
    for base in BASES:
        with torch.no_grad():
            assert torch.equal(_bits(gaaf.GAAF(base, variant="surrogate")(x)), _bits(reference.BASES[base](x)))


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("base", BASES)
def test_the_limit_of_gaaf(base, shape):
    """floor's value and gradient approach the surrogate's as K grows: |Δy| ≤ 0.5/K·max s,
    |Δgrad| = |g·s'| ≤ 0.5/K·max|s'| (≤ 0.5: width 3 gives √(2/3)·e^{−1/2} ≈ 0.495)."""
    x = torch.randn(2000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4
    x = x[(x.abs() > 1e-3) & ((x - 20.0).abs() > 1e-3)]  # not on relu's or softplus's kink

    def value_and_grad(spec):
        t = x.clone().requires_grad_(True)
        y = GAAFFn.apply(t, spec)
        y.sum().backward()
        return y.detach(), t.grad

    y_s, g_s = value_and_grad(GAAFSpec.build(base, variant="surrogate", **SHAPES[shape]))
    torch.testing.assert_close(g_s, torch.func.vmap(torch.func.grad(reference.BASES[base]))(x)
                               + reference.shape_value(x, **SHAPES[shape]), rtol=0, atol=1e-12)
    for k in (1e2, 1e4, 1e7):
        y_f, g_f = value_and_grad(GAAFSpec.build(base, frequency=k, variant="floor", **SHAPES[shape]))
        assert (y_f - y_s).abs().max().item() <= 0.5 / k + 1e-12
        assert (g_f - g_s).abs().max().item() <= 0.5 / k * 0.5 + 1e-12


@pytest.mark.parametrize("base,shape", [("tanh", "gaussian"), ("softplus", "sigmoid"), ("elu", "none"),
                                        ("gelu", "sigmoid"), ("sigmoid", "gaussian")])
def test_double_backward(base, shape):
    """The backward φ' + s is itself differentiated exactly: gradgradcheck, and φ'' + s' against
    autograd of the explicit φ'(x) + s(x)."""
    spec = GAAFSpec.build(base, variant="surrogate", **SHAPES[shape])
    x = torch.randn(12, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    x = x[x.abs() > 0.05].requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: GAAFFn.apply(t, spec), (x,), eps=1e-6, atol=1e-7)

    def second(first):
        t = x.detach().clone().requires_grad_(True)
        return torch.autograd.grad(first(t).sum(), t)[0]

    def fused_first(t):
        return torch.autograd.grad(GAAFFn.apply(t, spec).sum(), t, create_graph=True)[0]

    def explicit_first(t):
        phi_prime = torch.autograd.grad(reference.BASES[base](t).sum(), t, create_graph=True)[0]
        return phi_prime + reference.shape_value(t, **SHAPES[shape])

    torch.testing.assert_close(second(fused_first), second(explicit_first), rtol=0, atol=1e-12)


def _bump(x):
    return torch.exp(-0.5 * x * x)


def _grads(model, x):
    model.zero_grad()
    y = model(x)
    y.square().sum().backward()
    return y.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("shape", ["sigmoid", "gaussian", "none", _bump], ids=lambda s: getattr(s, "__name__", s))
def test_outer_compile_fullgraph(shape):
    """torch.compile(fullgraph=True) traces the surrogate (the callable shape through its
    autograd form) and gives eager's outputs and gradients."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), gaaf.GAAF("silu", shape, variant="surrogate"), nn.Linear(16, 1)).double()
    x = torch.randn(32, 8, dtype=torch.float64)
    y_e, g_e = _grads(model, x)
    y_c, g_c = _grads(torch.compile(model, fullgraph=True, backend="aot_eager"), x)
    torch.testing.assert_close((y_c, g_c), (y_e, g_e), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_compiled_backward_kernel_float64(monkeypatch, recwarn):
    """The eager compiled backward kernel (Inductor) against the plain math, float64."""
    monkeypatch.delenv("GAAF_NO_COMPILE", raising=False)
    used = []
    real = kernels._kernels
    monkeypatch.setattr(kernels, "_kernels", lambda spec, x: used.append(spec) or real(spec, x))
    spec = GAAFSpec.build("gelu", variant="surrogate", shift=-1.0)
    x = torch.randn(kernels.EAGER_COMPILE_MIN_NUMEL * 2, dtype=torch.float64) * 6
    x[:4] = torch.tensor([1.7e308, -1.7e308, 1e30, -1e30], dtype=torch.float64)
    gy = torch.randn_like(x)

    def value_and_grad():
        t = x.clone().requires_grad_(True)
        y = GAAFFn.apply(t, spec)
        y.backward(gy)
        return y.detach(), t.grad

    fused.set_eager_compile(True)
    y_c, g_c = value_and_grad()
    fused.set_eager_compile(False)
    assert used == [spec] and kernels.compile_failure() is None  # the backward, compiled
    y_p, g_p = value_and_grad()
    assert torch.equal(_bits(y_c), _bits(y_p)) and torch.isfinite(g_c).all()
    torch.testing.assert_close(g_c, g_p, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_outer_compile_inductor_float64_matches_eager():
    """Inductor (with the activation checkpoint, batch norm before the op, as in the ResNets)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                          gaaf.GAAF("relu", shift=-1.0, variant="surrogate"), nn.Conv2d(8, 4, 3, padding=1)).double()
    twin = copy.deepcopy(model)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y_e, g_e = _grads(model, x)
    y_c, g_c = _grads(torch.compile(twin, fullgraph=True), x)
    torch.testing.assert_close((y_c, g_c), (y_e, g_e), rtol=1e-9, atol=1e-9)
