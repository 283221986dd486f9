"""The eager kernels' direct call (gaaf.activations.direct_call): used only where it is confirmed to
give bitwise the wrapped kernel's result; anything unexpected keeps the wrapped function."""
from __future__ import annotations

import pytest
import torch

from gaaf.activations import direct_call, fused, kernels
from gaaf.activations.direct_call import bitwise_equal, direct_runner
from gaaf.activations.spec import GAAFSpec

N = 1 << 16  # above kernels.EAGER_COMPILE_MIN_NUMEL


def _graph_with(call):
    """A stand-in CompiledFxGraph (the real class, no constructor run) whose generated code is `call`."""
    from torch._inductor.output_code import CompiledFxGraph

    graph = CompiledFxGraph.__new__(CompiledFxGraph)
    graph.current_callable = call
    return graph


def _wrapped(graph):
    """Like an AOTCompiledFunction: the graph sits in a closure a few wrappers down."""
    def inner(*args):
        return graph.current_callable([args[0].shape[0], *args])[0]

    def outer(*args):
        return inner(*args)

    return outer


def test_bitwise_equal_compares_bits_strides_and_dtypes():
    a = torch.tensor([1.0, float("nan"), -0.0])
    assert bitwise_equal(a, a.clone())  # NaN equals itself by its bits
    assert not bitwise_equal(a, torch.tensor([1.0, float("nan"), 0.0]))  # -0.0 and 0.0 differ
    assert not bitwise_equal(a, a.double())
    m = torch.randn(4, 6)
    assert not bitwise_equal(m.t(), m.t().contiguous())  # same values, other strides
    assert bitwise_equal(m.t(), m.clone().t())


def test_direct_runner_used_when_it_matches():
    calls = []

    def call(args):
        n, x = args
        calls.append(n)
        return (x * 2.0,)

    fn = _wrapped(_graph_with(call))
    x = torch.randn(N)
    run = direct_runner(fn, (x,), fn(x))
    assert run is not None
    y = torch.randn(N + 3)
    assert bitwise_equal(run(y), y * 2.0) and calls[-1] == N + 3  # the length goes first


@pytest.mark.parametrize("call", [
    lambda args: (args[1] * 3.0,),           # a different result
    lambda args: args[1] * 2.0,              # not a one-tensor tuple
    lambda args: (_ for _ in ()).throw(TypeError("other calling convention")),
])
def test_direct_runner_refused_unless_bitwise_the_same(call):
    fn = _wrapped(_graph_with(call))
    x = torch.randn(N)
    assert direct_runner(fn, (x,), x * 2.0) is None


def test_direct_runner_without_a_graph_is_none():
    x = torch.randn(N)
    assert direct_runner(lambda t: t * 2.0, (x,), x * 2.0) is None
    assert direct_runner(object(), (x,), x) is None


@pytest.mark.slow
def test_real_kernels_run_directly_and_bitwise_as_wrapped(monkeypatch):
    """On CPU the compiled eager kernels end up called directly, with the wrapped kernel's bits."""
    monkeypatch.delenv("GAAF_NO_COMPILE", raising=False)
    kernels._reset_for_tests()
    fused.set_eager_compile(True)
    try:
        spec = GAAFSpec.build("relu", "sigmoid", shift=-1.0)
        x, g = torch.randn(N) * 4, torch.randn(N)
        kernels.forward_flat(x, spec)
        kernels.backward_flat(x, g, spec)
        assert kernels.compile_failure() is None
        fwd, bwd = kernels._cache[kernels.cache_key(spec, x)]
        assert fwd.run.__module__ == direct_call.__name__ and bwd.run.__module__ == direct_call.__name__
        x2, g2 = torch.randn(3 * N + 5) * 4, torch.randn(3 * N + 5)
        wrapped_f = fwd.compiled(x2)  # the guarded torch.compile function: Dynamo's own call
        wrapped_b = bwd.compiled(x2, g2)
        assert bitwise_equal(kernels.forward_flat(x2, spec), wrapped_f)
        assert bitwise_equal(kernels.backward_flat(x2, g2, spec), wrapped_b)
    finally:
        fused.set_eager_compile(None)
        kernels._reset_for_tests()
