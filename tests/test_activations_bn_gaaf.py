"""The fused BatchNorm(train) [+ residual] → GAAF op (gaaf.activations.bn_gaaf) against autograd of the
plain composition (BatchNorm's training formula, then the reference GAAF), gradcheck, BatchNorm's
running statistics, and what it saves for the backward (plain eager math; GAAF_NO_COMPILE=1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaaf.activations import fused, reference
from gaaf.activations.bn_gaaf import BNGAAFFn, batch_stats, bn_gaaf, normalized
from gaaf.activations.spec import GAAFSpec

SPECS = {
    "gaaf_relu_shift-1": GAAFSpec.build("relu", shift=-1.0),
    "gaaf_tanh": GAAFSpec.build("tanh"),
    "relu_round": GAAFSpec.build("relu", variant="round"),
    "sigmoid_gaussian": GAAFSpec.build("sigmoid", "gaussian", center=0.25, width=3.0),
    "elu_none": GAAFSpec.build("elu", "none"),
    "silu_surrogate": GAAFSpec.build("silu", variant="surrogate"),
}
EPS = 1e-3


@pytest.fixture(autouse=True)
def _plain_eager():
    fused.set_eager_compile(False)
    yield
    fused.set_eager_compile(None)


def _spec_kwargs(spec: GAAFSpec) -> dict:
    return dict(base=spec.base, shape=spec.shape, frequency=spec.frequency, variant=spec.variant, **spec.shape_params)


def _inputs(seed: int, shape=(4, 3, 6, 5), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    c = shape[1]
    z = torch.randn(shape, generator=gen, dtype=dtype) * 2.0 + 0.5
    w = 0.5 + torch.rand(c, generator=gen, dtype=dtype)
    b = torch.randn(c, generator=gen, dtype=dtype) * 0.5
    r = torch.randn(shape, generator=gen, dtype=dtype)
    return z, w, b, r


def _plain(z, w, b, r, spec):
    """BatchNorm's training formula (F.batch_norm, batch statistics), + r, then the reference GAAF."""
    x = F.batch_norm(z, None, None, w, b, True, 0.0, EPS)
    return reference.gaaf_reference(x if r is None else r + x, **_spec_kwargs(spec))


def _value_and_grads(fn, tensors, gy):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    y = fn(*leaves)
    grads = torch.autograd.grad(y, leaves, gy)
    return y.detach(), grads


@pytest.mark.parametrize("residual", [False, True], ids=["no_residual", "residual"])
@pytest.mark.parametrize("name", list(SPECS))
def test_matches_autograd_of_the_plain_composition_float64(name, residual):
    spec = SPECS[name]
    z, w, b, r = _inputs(1)
    gy = torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tensors = (z, w, b, r) if residual else (z, w, b)
    y_f, g_f = _value_and_grads(lambda *t: bn_gaaf(*t[:3], spec, residual=t[3] if residual else None, eps=EPS),
                                tensors, gy)
    y_p, g_p = _value_and_grads(lambda *t: _plain(*t[:3], t[3] if residual else None, spec), tensors, gy)
    assert (y_f - y_p).abs().max().item() <= 1e-12
    for name_, a, e in zip(("z", "w", "b", "r"), g_f, g_p):
        assert (a - e).abs().max().item() <= 1e-12 * max(1.0, e.abs().max().item()), name_


def _smooth_inputs(spec: GAAFSpec, residual: bool, shape=(2, 3, 3, 3)):
    """Seeded inputs whose x = BN(z) (+ r) keeps x·K at least 0.01 away from every jump or kink of
    the sawtooth (integers; half-integers for "round") and x away from relu's kink: where gradcheck's
    finite differences (eps 1e-6) are valid. The first of 200 seeds that qualifies."""
    for seed in range(200):
        z, w, b, r = _inputs(seed, shape)
        mean, invstd = batch_stats(z, None, None, 0.0, EPS)
        x = normalized(z, w, b, mean, invstd, r if residual else None)
        frac = torch.frac(x * spec.frequency).abs()
        cuts = (0.0, 0.5, 1.0) if spec.variant == "round" else (0.0, 1.0)
        if all(((frac - c).abs() > 0.01).all() for c in cuts) and (x.abs() > 1e-3).all():
            return z, w, b, r
    raise AssertionError("no seed gave a smooth point")


@pytest.mark.parametrize("residual", [False, True], ids=["no_residual", "residual"])
@pytest.mark.parametrize("name", ["gaaf_relu_shift-1", "gaaf_tanh", "relu_round", "sigmoid_gaussian"])
def test_gradcheck(name, residual):
    s = SPECS[name]
    spec = GAAFSpec.build(s.base, s.shape, 10.0, s.variant, **s.shape_params)  # K = 10: teeth 0.1 wide
    z, w, b, r = (t.requires_grad_(True) for t in _smooth_inputs(spec, residual))
    if residual:
        fn, args = (lambda z, w, b, r: bn_gaaf(z, w, b, spec, residual=r, eps=EPS)), (z, w, b, r)
    else:
        fn, args = (lambda z, w, b: bn_gaaf(z, w, b, spec, eps=EPS)), (z, w, b)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_running_statistics_follow_batchnorm(dtype):
    spec = SPECS["gaaf_relu_shift-1"]
    bn = nn.BatchNorm2d(3, eps=EPS, momentum=0.1).to(dtype).train()
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    for step in range(4):
        z, w, b, _ = _inputs(10 + step, dtype=dtype)
        with torch.no_grad():
            bn.weight.copy_(w)
            bn.bias.copy_(b)
        expected = reference.gaaf_reference(bn(z), **_spec_kwargs(spec))
        got = bn_gaaf(z, w, b, spec, running_mean=mean, running_var=var, momentum=0.1, eps=EPS)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(mean, bn.running_mean, rtol=1e-12 if dtype == torch.float64 else 1e-6, atol=0.0)
    torch.testing.assert_close(var, bn.running_var, rtol=1e-12 if dtype == torch.float64 else 1e-6, atol=0.0)


def _saved_storages(fn):
    """{storage data_ptr: storage bytes} of every tensor saved for backward while fn runs."""
    seen: "dict[int, int]" = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn()
    return seen, y


@pytest.mark.parametrize("residual", [False, True], ids=["no_residual", "residual"])
def test_saves_no_activation_sized_tensor_but_z_and_r(residual):
    z, w, b, r = (t.requires_grad_(True) for t in _inputs(3, (8, 4, 16, 16), torch.float32))
    seen, y = _saved_storages(lambda: bn_gaaf(z, w, b, SPECS["gaaf_relu_shift-1"], residual=r if residual else None,
                                              eps=EPS))
    big = {p for p, n in seen.items() if n >= z.numel() * z.element_size()}
    expected = {z.untyped_storage().data_ptr()} | ({r.untyped_storage().data_ptr()} if residual else set())
    assert big == expected  # z (and r): not x, not y
    assert sum(seen.values()) - sum(seen[p] for p in big) == 4 * 4 * 4  # w, b, mean, invstd: 4 floats each
    y.sum().backward()
    assert all(t.grad is not None for t in ((z, w, b, r) if residual else (z, w, b)))


def test_the_plain_composition_saves_x_as_well():
    """The comparison the op exists for: BatchNorm then the fused GAAF op keeps x too."""
    z, w, b, _ = (t.requires_grad_(True) for t in _inputs(3, (8, 4, 16, 16), torch.float32))
    spec = SPECS["gaaf_relu_shift-1"]
    seen, _ = _saved_storages(lambda: fused.gaaf_fused(F.batch_norm(z, None, None, w, b, True, 0.0, EPS), spec))
    assert sum(n >= z.numel() * 4 for n in seen.values()) == 2  # z and x


def test_channels_last_and_partial_grads():
    spec = SPECS["gaaf_tanh"]
    z, w, b, r = _inputs(4, (4, 3, 6, 5))
    y = bn_gaaf(z, w, b, spec, residual=r, eps=EPS)
    zc, rc = z.contiguous(memory_format=torch.channels_last), r.contiguous(memory_format=torch.channels_last)
    zc.requires_grad_(True)
    yc = bn_gaaf(zc, w, b, spec, residual=rc, eps=EPS)  # only z requires grad
    assert yc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(yc, y, rtol=1e-12, atol=1e-12)
    gy = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (gz,) = torch.autograd.grad(yc, zc, gy)
    _, (gz_plain,) = _value_and_grads(lambda t: _plain(t, w, b, r, spec), (z,), gy)
    torch.testing.assert_close(gz, gz_plain, rtol=1e-10, atol=1e-12)


def test_not_twice_differentiable():
    z, w, b, _ = (t.requires_grad_(True) for t in _inputs(6))
    gy = torch.ones(z.shape, dtype=z.dtype, requires_grad=True)  # double backward differentiates through gy
    (gz,) = torch.autograd.grad(bn_gaaf(z, w, b, SPECS["gaaf_tanh"], eps=EPS), z, gy, create_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        gz.sum().backward()


@pytest.mark.parametrize("case, match", [
    ("int", "float32/float64"), ("half", "float32/float64"), ("callable", "named shape"),
    ("weight", "weight must be"), ("residual", "residual must have"),
])
def test_bad_input_says_what_is_allowed(case, match):
    z, w, b, r = _inputs(7, dtype=torch.float32)
    spec = SPECS["gaaf_relu_shift-1"]
    kwargs: dict = {}
    if case == "int":
        z = z.to(torch.int64)
    elif case == "half":
        z = z.half()
    elif case == "callable":
        spec = GAAFSpec.build("relu", torch.sigmoid)
    elif case == "weight":
        w = w[:2]
    else:
        kwargs["residual"] = r[:, :2]
    with pytest.raises(ValueError, match=match):
        bn_gaaf(z, w, b, spec, **kwargs)


def test_function_is_the_public_entry():
    z, w, b, _ = _inputs(8)
    spec = SPECS["gaaf_relu_shift-1"]
    direct = BNGAAFFn.apply(z, w, b, None, None, None, 0.0, EPS, spec)
    torch.testing.assert_close(direct, bn_gaaf(z, w, b, spec, eps=EPS), rtol=0.0, atol=0.0)
