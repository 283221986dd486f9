"""The compiled kernels of the fused BatchNorm → GAAF op (gaaf.activations.bn_kernels): the same
function and exact derivative as the plain composition (float64, 1e-12), used only where they
apply. Compiles a few float64 kernels (seconds each), hence slow."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gaaf.activations import bn_kernels, fused, kernels, reference
from gaaf.activations.bn_gaaf import bn_gaaf
from gaaf.activations.spec import GAAFSpec
from gaaf.models import bn_act
from gaaf.models.resnet import resnet_v1

SPEC = GAAFSpec.build("relu", shift=-1.0)
EPS = 1e-3


@pytest.fixture
def compiled(monkeypatch):
    """Compiled kernels on; yields the list of bn kernels called ((dtype, kind) per call). The test
    fails if compiling failed (the op would have fallen back to the plain ops)."""
    monkeypatch.delenv("GAAF_NO_COMPILE", raising=False)
    assert kernels.compile_failure() is None, kernels.compile_failure()
    fused.set_eager_compile(True)
    used: list = []
    real = bn_kernels._kernel
    monkeypatch.setattr(bn_kernels, "_kernel",
                        lambda spec, dtype, kind: used.append((dtype, kind)) or real(spec, dtype, kind))
    yield used
    fused.set_eager_compile(False)
    assert kernels.compile_failure() is None, kernels.compile_failure()


def _inputs(shape, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=gen, dtype=dtype) * 2.0 + 0.5
    w = 0.5 + torch.rand(shape[1], generator=gen, dtype=dtype)
    b = torch.randn(shape[1], generator=gen, dtype=dtype) * 0.5
    r = torch.randn(shape, generator=gen, dtype=dtype)
    gy = torch.randn(shape, generator=gen, dtype=dtype)
    return z, w, b, r, gy


def _value_and_grads(fn, tensors, gy):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    y = fn(*leaves)
    return y.detach(), torch.autograd.grad(y, leaves, gy)


def _plain(z, w, b, r):
    x = F.batch_norm(z, None, None, w, b, True, 0.0, EPS)
    return reference.gaaf_reference(x if r is None else r + x, base="relu", shift=-1.0)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("residual", [False, True], ids=["no_residual", "residual"])
def test_compiled_kernels_match_autograd_of_the_plain_composition_float64(compiled, residual, layout):
    z, w, b, r, gy = _inputs((4, 8, 32, 32))  # 32,768 elements: the kernels' minimum
    if layout == "channels_last":
        z, r = (t.contiguous(memory_format=torch.channels_last) for t in (z, r))
    tensors = (z, w, b, r) if residual else (z, w, b)
    y_k, g_k = _value_and_grads(lambda *t: bn_gaaf(*t[:3], SPEC, residual=t[3] if residual else None, eps=EPS),
                                tensors, gy)
    kind = ("_r" if residual else "") + ("_cl" if layout == "channels_last" else "")
    assert compiled == [(torch.float64, "fwd" + kind), (torch.float64, "bwd" + kind)]
    assert y_k.stride() == z.stride()
    y_p, g_p = _value_and_grads(lambda *t: _plain(*t[:3], t[3] if residual else None), tensors, gy)
    assert (y_k - y_p).abs().max().item() <= 1e-12
    for name, a, e in zip("zwbr", g_k, g_p):
        assert (a - e).abs().max().item() <= 1e-12 * max(1.0, e.abs().max().item()), name


@pytest.mark.slow
@pytest.mark.parametrize("case", ["small", "one_sample", "permuted", "residual_channels_last"])
def test_plain_ops_where_the_kernels_do_not_apply(compiled, case):
    shape = {"small": (2, 4, 8, 8), "one_sample": (1, 8, 64, 64)}.get(case, (4, 8, 32, 32))
    z, w, b, r, gy = _inputs(shape, seed=1)
    if case == "permuted":  # dense, but neither contiguous nor channels_last: (N, C, H, W) stored as (C, N, W, H)
        z = z.permute(1, 0, 3, 2).contiguous().permute(1, 0, 3, 2)
    residual = r.contiguous(memory_format=torch.channels_last) if case == "residual_channels_last" else None
    tensors = (z, w, b)
    y, g = _value_and_grads(lambda *t: bn_gaaf(*t, SPEC, residual=residual, eps=EPS), tensors, gy)
    assert compiled == []
    y_p, g_p = _value_and_grads(lambda *t: _plain(*t, residual), tensors, gy)
    torch.testing.assert_close(y, y_p, rtol=1e-12, atol=1e-12)
    for a, e in zip(g, g_p):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_resnet_step_with_compiled_kernels_matches_the_module_path_float64(compiled):
    torch.manual_seed(0)
    model = resnet_v1(8, activation="gaaf_relu", shift=-1.0).double()
    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(8, 3, 32, 32, generator=gen, dtype=torch.float64), torch.randint(0, 10, (8,), generator=gen)
    try:
        results = []
        for net, fuse in ((model, True), (twin, False)):
            bn_act.set_bn_fusion(fuse)
            out = net(x)
            F.cross_entropy(out, t).backward()
            results.append((out.detach(), {k: p.grad for k, p in net.named_parameters()}))
    finally:
        bn_act.set_bn_fusion(None)
    assert {kind for _, kind in compiled} == {"fwd", "fwd_r", "bwd", "bwd_r"}  # every site (numel ≥ 32,768)
    (out_f, g_f), (out_u, g_u) = results
    torch.testing.assert_close(out_f, out_u, rtol=1e-10, atol=1e-10)
    for k in g_u:
        torch.testing.assert_close(g_f[k], g_u[k], rtol=1e-9, atol=1e-10, msg=k)


@pytest.mark.slow
def test_a_changed_thread_count_gets_its_own_kernels(compiled):
    """Inductor's CPU code fixes its thread count: after torch.set_num_threads the op builds (or
    loads) kernels for the new count and uses them, with the same results; the old ones stay."""
    z, w, b, _, gy = _inputs((4, 8, 32, 32), seed=2)
    first, first_grads = _value_and_grads(lambda *t: bn_gaaf(*t, SPEC, eps=EPS), (z, w, b), gy)
    kernel = bn_kernels._kernel(SPEC, torch.float64, "fwd")
    stats = bn_kernels._stats_kernel(torch.float64, "")
    threads = torch.get_num_threads()
    alpha, beta = torch.ones(8, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)
    torch.set_num_threads(threads + 1)
    try:
        assert bn_kernels._kernel(SPEC, torch.float64, "fwd") is not kernel
        assert bn_kernels._stats_kernel(torch.float64, "") is not stats
        with torch.no_grad():
            assert bn_kernels.forward(z, alpha, beta, None, SPEC) is not None  # the new count's kernel
            assert bn_kernels.batch_stats(z) is not None
        again, grads = _value_and_grads(lambda *t: bn_gaaf(*t, SPEC, eps=EPS), (z, w, b), gy)
    finally:
        torch.set_num_threads(threads)
    assert bn_kernels._kernel(SPEC, torch.float64, "fwd") is kernel
    torch.testing.assert_close(again, first, rtol=1e-12, atol=1e-12)
    for a, e in zip(grads, first_grads):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_a_call_the_guards_refuse_runs_the_plain_ops(compiled):
    """A kernel's guards hold the global state it was compiled under: after a change (here
    deterministic algorithms switched on) its calls are refused (checked on every call) and the op
    runs its plain ops, with the same results."""
    z, w, b, _, gy = _inputs((4, 8, 32, 32), seed=2)
    first, _ = _value_and_grads(lambda *t: bn_gaaf(*t, SPEC, eps=EPS), (z, w, b), gy)
    kernel = bn_kernels._kernel(SPEC, torch.float64, "fwd")
    alpha, beta = torch.ones(8, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.no_grad():
            assert bn_kernels.forward(z, alpha, beta, None, SPEC) is None  # refused: plain ops
        again, grads = _value_and_grads(lambda *t: bn_gaaf(*t, SPEC, eps=EPS), (z, w, b), gy)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert kernel._fast is not None
    torch.testing.assert_close(again, first, rtol=1e-12, atol=1e-12)
    y_p, g_p = _value_and_grads(lambda *t: _plain(*t, None), (z, w, b), gy)
    for a, e in zip(grads, g_p):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_statistics_follow_batchnorm(compiled, monkeypatch, dtype, layout):
    """The one-pass statistics kernel: the output and the running statistics of three training steps
    as nn.BatchNorm2d's (to rounding: Welford against BatchNorm's two passes)."""
    stats_calls: list = []
    real = bn_kernels._stats_kernel
    monkeypatch.setattr(bn_kernels, "_stats_kernel", lambda d, lay: stats_calls.append((d, lay)) or real(d, lay))
    bn = torch.nn.BatchNorm2d(8, eps=EPS, momentum=0.1).to(dtype)
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for step in range(3):
        z, w, b, _, _ = _inputs((4, 8, 32, 32), seed=10 + step, dtype=dtype)
        if layout == "channels_last":
            z = z.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            bn.weight.copy_(w)
            bn.bias.copy_(b)
        expected = reference.gaaf_reference(bn(z), base="relu", shift=-1.0)
        got = bn_gaaf(z, w, b, SPEC, running_mean=mean, running_var=var, momentum=0.1, eps=EPS)
        # float32: x within a few ulps, so the sawtooth may sit one step (1/K) apart
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol if dtype == torch.float64 else 1.01e-4)
    assert stats_calls == [(dtype, "_cl" if layout == "channels_last" else "")] * 3
    torch.testing.assert_close(mean, bn.running_mean, rtol=tol, atol=tol)
    torch.testing.assert_close(var, bn.running_var, rtol=tol, atol=tol)
