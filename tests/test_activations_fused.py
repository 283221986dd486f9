"""Compiled paths of the fused op: eager kernels (torch.compile'd per spec) and an outer
torch.compile(fullgraph=True) of a model. CPU inductor compiles take seconds each, so this file
compiles few kernels: one float32 spec (forward + backward) shared by most tests, one bfloat16."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import gaaf
from gaaf.activations import fused, kernels, reference
from gaaf.activations.spec import GAAFSpec

SPEC = GAAFSpec.build("relu", "sigmoid", shift=-1.0)  # the kernels most tests here share
N = 1 << 16  # above kernels.EAGER_COMPILE_MIN_NUMEL


def _bump(x):
    return torch.exp(-0.5 * x * x)


def _value_and_grad(fn, x, gy):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    y.backward(gy)
    return y.detach(), x.grad


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


#: the start of the RuntimeWarning kernels.py gives when compiling failed and it falls back
FALLBACK_WARNING = "gaaf: compiling the fused GAAF kernels failed"


def _assert_no_fallback(recwarn) -> None:
    """Compiling did not fail: no failure recorded, no fallback warning given. Without this a
    compiled-kernel test passes on the plain math whenever compiling fails (the error is caught)."""
    assert kernels.compile_failure() is None, f"compiling failed: {kernels.compile_failure()}"
    assert not [str(w.message) for w in recwarn if FALLBACK_WARNING in str(w.message)]


@pytest.fixture
def compile_on(monkeypatch, recwarn):
    """Eager compiled kernels on, whatever GAAF_NO_COMPILE says; plain again afterwards. The test
    fails if compiling failed before or during it."""
    monkeypatch.delenv("GAAF_NO_COMPILE", raising=False)
    assert kernels.compile_failure() is None, f"compiling failed earlier: {kernels.compile_failure()}"
    fused.set_eager_compile(True)
    yield
    fused.set_eager_compile(False)
    _assert_no_fallback(recwarn)


@pytest.fixture
def compiled(compile_on, monkeypatch):
    """compile_on, and the test must run compiled kernels: each call that reaches the kernel cache
    (the op found compiling usable for it) is recorded; at the end there must be one, and (by
    compile_on) none of them may have failed and fallen back to the plain math."""
    used: "list[tuple]" = []  # (spec, dtype, device type) per call that took the compiled path
    real = kernels._kernels

    def spy(spec, x):
        used.append(kernels.cache_key(spec, x))
        return real(spec, x)

    monkeypatch.setattr(kernels, "_kernels", spy)
    yield used
    assert used, "no call took the compiled path: everything ran the plain math"
    assert set(used) <= set(kernels._cache)  # compiled kernels are cached for what was called


@pytest.fixture(autouse=True)
def _plain_by_default():
    fused.set_eager_compile(False)
    yield
    fused.set_eager_compile(None)


# --------------------------------------------------------------------------- switches
def test_switches(monkeypatch):
    fused.set_eager_compile(None)
    monkeypatch.setenv("GAAF_NO_COMPILE", "1")
    assert not fused.eager_compile_enabled()
    fused.set_eager_compile(True)  # explicit choice wins over the environment
    assert fused.eager_compile_enabled()
    fused.set_eager_compile(None)
    monkeypatch.setenv("GAAF_NO_COMPILE", "0")
    assert fused.eager_compile_enabled()
    fused.set_eager_compile(False)
    assert not fused.eager_compile_enabled()
    with pytest.raises(ValueError, match="True, False or None"):
        fused.set_eager_compile("yes")  # type: ignore[arg-type]


def test_plain_paths_never_compile(monkeypatch, recwarn):
    calls = []

    def boom(*args, **kwargs):
        calls.append(args)
        raise AssertionError("torch.compile must not be called")

    monkeypatch.setattr(torch, "compile", boom)
    x = torch.randn(N, requires_grad=True)
    try:
        fused.set_eager_compile(False)
        gaaf.GAAF()(x).sum().backward()
        fused.set_eager_compile(True)
        gaaf.GAAF()(x[:100]).sum().backward()  # small tensors stay plain
        gaaf.GAAF(shape=_bump)(x).sum().backward()  # callable shapes stay plain
        # the op catches compile errors and falls back, so `boom` raising alone would prove nothing
        assert calls == []
        _assert_no_fallback(recwarn)
    finally:
        if kernels.compile_failure() is not None:  # do not leave the failure to the following tests
            kernels._reset_for_tests()


def test_compile_failure_warns_once_and_falls_back(monkeypatch):
    """A compiler that fails on the first call (as a missing C++ compiler does): one warning, the
    failure remembered (no second try), and the plain math's values and gradients."""
    tries = []

    def broken_compile(fn, **kwargs):
        def run(*args):
            tries.append(fn.__name__)
            raise RuntimeError("no C++ compiler found\nsecond line")
        return run

    kernels._reset_for_tests()
    monkeypatch.setattr(torch, "compile", broken_compile)
    fused.set_eager_compile(True)
    x = torch.randn(N, dtype=torch.float64, requires_grad=True)
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
            y = gaaf.GAAF("tanh", "gaussian")(x)
        assert len(tries) == 1 and tries[0].endswith("_fwd")  # it did try the compiled forward
        assert kernels.compile_failure() == "RuntimeError: no C++ compiler found"
        assert not fused.eager_compile_enabled()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second call must not warn again
            y2 = gaaf.GAAF("tanh", "gaussian")(x)
            y2.sum().backward()
        assert len(tries) == 1  # remembered: neither the forward nor the backward tried again
        xr = x.detach().clone().requires_grad_(True)
        ref = reference.gaaf_reference(xr, "tanh", "gaussian")
        ref.sum().backward()
        torch.testing.assert_close((y.detach(), y2.detach()), (ref.detach(), ref.detach()), rtol=0, atol=1e-12)
        torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=1e-12)
    finally:
        kernels._reset_for_tests()


# --------------------------------------------------------------------------- eager compiled kernels
@pytest.mark.slow
def test_compiled_matches_plain_float32(compiled):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, generator=gen) * 6
    # x·K overflowing, beyond float resolution, ±max: the compiler must keep the NaN guard
    x[:8] = torch.tensor([3.4e38, -3.4e38, 1e30, -1e30, 1700.0, -1e36, 3.0e34, 3.5e34])
    gy = torch.randn(N, generator=gen)
    y_c, g_c = _value_and_grad(lambda t: gaaf.functional.gaaf_from_spec(t, SPEC), x, gy)
    assert torch.isfinite(y_c).all() and torch.isfinite(g_c).all()
    assert compiled == [kernels.cache_key(SPEC, x)] * 2  # forward, backward
    fused.set_eager_compile(False)
    y_p, g_p = _value_and_grad(lambda t: gaaf.functional.gaaf_from_spec(t, SPEC), x, gy)
    assert len(compiled) == 2  # the plain comparison did not take the compiled path
    # same formulas; the compiler may contract a·b + c into an FMA, so allow a rounding or so
    # (or a whole sawtooth step of 1/K·s where x·K lands within rounding of an integer)
    close = (y_c - y_p).abs() <= 1e-6
    assert close.float().mean() > 0.999 and ((y_c - y_p).abs() <= 1.01 / SPEC.frequency).all()
    torch.testing.assert_close(g_c, g_p, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_new_shapes_and_layouts_do_not_recompile(compiled):
    act = gaaf.GAAF(SPEC.base, SPEC.shape, **SPEC.shape_params)
    x = torch.randn(N, requires_grad=True)
    act(x).sum().backward()  # warm: compiles (or reuses) this spec's forward and backward
    before = _graphs()
    inputs = [
        torch.randn(3 * N + 7),
        torch.randn(8, 16, 24, 24).contiguous(memory_format=torch.channels_last),
        torch.randn(300, 400).t(),
        torch.randn(2, 300, 400)[:, ::2, 1:],
        torch.randn(N + 5)[5:],  # storage offset
    ]
    for i, t in enumerate(inputs):
        # the first one gets an expanded (stride 0) grad, as from .sum(), the rest dense grads
        gy = torch.randn(()).expand(t.shape) if i == 0 else torch.randn(t.shape)
        y, g = _value_and_grad(act, t, gy)
        assert y.stride() == torch.empty_like(t).stride() and g.stride() == torch.empty_like(t).stride()
        yr, gr = _value_and_grad(lambda u: reference.gaaf_reference(u, "relu", "sigmoid", shift=-1.0), t, gy)
        torch.testing.assert_close(g, gr, rtol=1e-5, atol=1e-5)
        assert ((y - yr).abs() <= 1.01 / SPEC.frequency).all()
    with torch.inference_mode():
        act(torch.randn(N))
    assert _graphs() - before <= 1  # inference_mode may add one forward entry, nothing else
    # on CPU both kernels run ahead-of-time compiled, without Dynamo's per-call guard check
    assert all(k.run is not k.compiled for k in kernels._cache[kernels.cache_key(SPEC, torch.zeros(1))])


@pytest.mark.slow
def test_compiled_bfloat16_returns_bfloat16(compiled):
    x = torch.randn(4, 128, 128, dtype=torch.bfloat16) * 3
    y_c, g_c = _value_and_grad(gaaf.get_activation("gaaf_tanh"), x, torch.ones_like(x))
    assert y_c.dtype == g_c.dtype == torch.bfloat16 and y_c.is_contiguous()
    ref = reference.gaaf_reference(x.float(), "tanh", "gaussian", width=3.0).to(torch.bfloat16)
    torch.testing.assert_close(y_c, ref, rtol=2**-7, atol=2**-7)
    assert torch.isfinite(g_c.float()).all()


# --------------------------------------------------------------------------- outer torch.compile
def _model(shape, dtype=torch.float64):
    torch.manual_seed(0)
    kw = {"width": 2.0} if shape == "gaussian" else {}
    return nn.Sequential(nn.Linear(8, 16), gaaf.GAAF("silu", shape, 100.0, "round", **kw), nn.Linear(16, 1)).to(dtype)


def _grads(model, x):
    model.zero_grad()
    y = model(x)
    y.square().sum().backward()
    return y.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("shape", ["sigmoid", "gaussian", "none", _bump], ids=lambda s: getattr(s, "__name__", s))
def test_outer_compile_fullgraph_traces_forward_and_backward(shape):
    torch._dynamo.reset()
    model = _model(shape)
    x = torch.randn(32, 8, dtype=torch.float64)
    y_e, g_e = _grads(model, x)
    cmodel = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    y_c, g_c = _grads(cmodel, x)
    torch.testing.assert_close((y_c, g_c), (y_e, g_e), rtol=0, atol=1e-12)


def _partitioned_graphs(model, x):
    """Forward and backward graphs of one training step as Inductor's partitioner splits them."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    graphs = {}

    def keep(name):
        def compiler(gm, example_inputs):
            graphs[name] = gm
            return gm.forward
        return compiler

    backend = aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"),
                           partition_fn=min_cut_rematerialization_partition)
    torch._dynamo.reset()
    _grads(torch.compile(model, fullgraph=True, backend=backend), x)
    return graphs


def _count(gm, op) -> int:
    return sum(node.target is op for node in gm.graph.nodes)


def test_outer_compile_recomputes_the_derivative_in_backward():
    """Under torch.compile the partitioner would otherwise evaluate φ_new'(x) in the forward graph
    and save it (it does so after a batch norm); inside the activation checkpoint the backward
    graph recomputes it from x (one exponential per pass), and the forward graph evaluates the
    sigmoid once, for the output."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), gaaf.GAAF("relu", "sigmoid", shift=-1.0),
                          nn.Linear(16, 1))
    graphs = _partitioned_graphs(model, torch.randn(32, 8))
    exp = torch.ops.aten.exp.default
    assert _count(graphs["forward"], exp) == 1
    assert _count(graphs["backward"], exp) >= 1


def test_outer_compile_without_grad_has_no_checkpoint():
    """Inference under torch.compile (no_grad) traces the plain op: no checkpoint region."""
    torch._dynamo.reset()
    seen = []

    def backend(gm, example_inputs):
        seen.append(gm)
        return gm.forward

    model = nn.Sequential(nn.Linear(8, 16), gaaf.GAAF("relu", "sigmoid", shift=-1.0))
    with torch.no_grad():
        y = torch.compile(model, fullgraph=True, backend=backend)(torch.randn(4, 8))
    assert y.shape == (4, 16)
    assert not any("checkpoint" in str(node.target) for gm in seen for node in gm.graph.nodes)


@pytest.mark.slow
def test_outer_compile_inductor(compile_on):
    torch._dynamo.reset()
    model = _model("sigmoid", torch.float32)
    x = torch.randn(64, 8)
    y_e, g_e = _grads(model, x)
    y_c, g_c = _grads(torch.compile(model, fullgraph=True), x)
    torch.testing.assert_close((y_c, g_c), (y_e, g_e), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_outer_compile_inductor_with_batch_norm_matches_eager():
    """The checkpointed path through Inductor's partitioner (batch norm before GAAF, as in the
    ResNets): outputs, parameter gradients and the running statistics match eager. float64: in
    float32 a batch-norm output that rounds differently can land x·K on the other side of an
    integer, a legitimate sawtooth step of 1/K that would blur the comparison."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), gaaf.GAAF("relu", "sigmoid", shift=-1.0),
                          nn.Conv2d(8, 4, 3, padding=1)).double()
    twin = copy.deepcopy(model)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y_e, g_e = _grads(model, x)
    y_c, g_c = _grads(torch.compile(twin, fullgraph=True), x)
    torch.testing.assert_close((y_c, g_c), (y_e, g_e), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(twin[1].running_var, model[1].running_var)


@pytest.mark.slow
def test_compiled_grads_accumulate_in_place_and_output_is_not_a_view(compiled):
    """The backward's output owns its storage, so autograd sums the two gradients meeting at a
    residual connection in place (as for relu) rather than with an extra out-of-place add; the
    forward's output stays writable in place (a following ReLU(inplace=True))."""
    from torch.profiler import profile

    class Res(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.c1, self.c2, self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), act(), act()

        def forward(self, x):
            h = self.a(self.c1(x))
            return self.b(h + self.c2(h))

    x = torch.randn(8, 4, 32, 32)  # 32768 elements: the compiled kernels
    counts = {}
    for name, act in (("relu", nn.ReLU), ("gaaf", lambda: gaaf.GAAF(SPEC.base, SPEC.shape, **SPEC.shape_params))):
        torch.manual_seed(0)
        m = Res(act)
        m(x).sum().backward()
        with profile() as prof:
            m(x).square().sum().backward()
        counts[name] = sum(e.count for e in prof.key_averages() if e.key == "aten::add")
    assert counts["gaaf"] == counts["relu"]
    t = torch.randn(8, 4, 32, 32, requires_grad=True)
    y = nn.ReLU(inplace=True)(gaaf.GAAF(SPEC.base, SPEC.shape, **SPEC.shape_params)(t))
    y.sum().backward()
    ref = reference.gaaf_reference(t.detach().clone().requires_grad_(True), "relu", "sigmoid", shift=-1.0)
    assert torch.allclose(y, torch.relu(ref), atol=1.01 / SPEC.frequency)


@pytest.mark.slow
def test_compiled_bases_at_the_edges_match_plain():
    """Every base's φ and φ' as Inductor compiles them (the compiled kernels run the same
    pointwise functions): finite at ±max and the other edges, and equal to the plain eager math up
    to the vector math library's few ulps. One compile for all bases, float32 and float64."""
    from gaaf.activations import pointwise

    def all_bases(x32, x64):
        return [torch.stack([f(x, b) for b in reference.BASES]) for x in (x32, x64)
                for f in (pointwise.base_value, lambda t, b: pointwise.base_slope_plus(t, b, torch.zeros_like(t)))]

    def edges(dtype):
        fi = torch.finfo(dtype)
        mags = [fi.max, fi.max / 2, 3.3895e38, fi.max / 1e4, 1e30, 745.5, 100.0, 40.5, 39.5, 20.5, 20.0, 3.0,
                0.5, fi.tiny, 0.0]
        return torch.tensor([s * m for m in mags for s in (1.0, -1.0)] * 5, dtype=dtype)  # 150: vector + tail

    torch._dynamo.reset()
    x32, x64 = edges(torch.float32), edges(torch.float64)
    compiled_out = torch.compile(all_bases, fullgraph=True)(x32, x64)
    for got, want in zip(compiled_out, all_bases(x32, x64)):
        assert torch.isfinite(got).all()
        eps = torch.finfo(got.dtype).eps
        torch.testing.assert_close(got, want, rtol=16 * eps, atol=16 * eps)
