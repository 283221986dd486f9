"""bn_gaaf with a shortcut module (BNShortcutGAAFFn): GAAF(BatchNorm_train(z) + shortcut(x)) with the
shortcut recomputed in the backward. Against autograd of the plain composition in float64 (every
gradient: z, BN's weight and bias, x, the shortcut's parameters), gradcheck, what it saves (z and x,
not the shortcut's output), and bad input (plain eager math; GAAF_NO_COMPILE=1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaaf.activations import GAAF, fused, reference
from gaaf.activations.bn_gaaf import batch_stats, bn_gaaf, normalized
from gaaf.activations.spec import GAAFSpec
from gaaf.models import bn_act
from gaaf.models.layers import ZeroPadShortcut
from test_activations_bn_gaaf import _saved_storages

EPS = 1e-3
SPECS = {"gaaf_relu_shift-1": GAAFSpec.build("relu", shift=-1.0), "gaaf_tanh": GAAFSpec.build("tanh"),
         "relu_round": GAAFSpec.build("relu", variant="round")}


@pytest.fixture(autouse=True)
def _plain_eager():
    fused.set_eager_compile(False)
    yield
    fused.set_eager_compile(None)


def _shortcut(kind: str, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return (nn.Conv2d(2, 3, 1, stride=2) if kind == "conv" else ZeroPadShortcut(2, 3, 2)).to(dtype)


def _inputs(seed: int, dtype=torch.float64, n=4):
    """z (n, 3, 3, 3), BN weight and bias (3,), and the block input x (n, 2, 6, 5): a stride-2 shortcut
    maps x to z's shape."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, 3, 3, generator=gen, dtype=dtype) * 2.0 + 0.5
    w = 0.5 + torch.rand(3, generator=gen, dtype=dtype)
    b = torch.randn(3, generator=gen, dtype=dtype) * 0.5
    x = torch.randn(n, 2, 6, 5, generator=gen, dtype=dtype)
    return z, w, b, x


def _plain(spec, shortcut, z, w, b, x):
    y = F.batch_norm(z, None, None, w, b, True, 0.0, EPS) + shortcut(x)
    return reference.gaaf_reference(y, base=spec.base, shape=spec.shape, frequency=spec.frequency,
                                    variant=spec.variant, **spec.shape_params)


def _fused(spec, shortcut, z, w, b, x):
    return bn_gaaf(z, w, b, spec, shortcut=shortcut, shortcut_input=x, eps=EPS)


def _value_and_grads(fn, spec, shortcut, tensors, gy):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    params = list(shortcut.parameters())
    y = fn(spec, shortcut, *leaves)
    grads = torch.autograd.grad(y, leaves + params, gy)
    return y.detach(), grads


@pytest.mark.parametrize("kind", ["conv", "zero_pad"])
@pytest.mark.parametrize("name", list(SPECS))
def test_matches_autograd_of_the_plain_composition_float64(name, kind):
    spec, shortcut = SPECS[name], _shortcut(kind)
    tensors = _inputs(1)
    gy = torch.randn(tensors[0].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y_f, g_f = _value_and_grads(_fused, spec, shortcut, tensors, gy)
    y_p, g_p = _value_and_grads(_plain, spec, shortcut, tensors, gy)
    assert len(g_f) == (6 if kind == "conv" else 4)  # z, w, b, x (+ the conv's weight and bias)
    assert (y_f - y_p).abs().max().item() <= 1e-12
    for i, (a, e) in enumerate(zip(g_f, g_p)):
        assert (a - e).abs().max().item() <= 1e-12 * max(1.0, e.abs().max().item()), i


def test_gradcheck():
    """At a point where x = BN(z) + shortcut(x_in) keeps x·K away from the sawtooth's jumps and x from
    relu's kink (K = 10: teeth 0.1 wide), so that finite differences are valid."""
    spec = GAAFSpec.build("relu", frequency=10.0, shift=-1.0)
    shortcut = _shortcut("conv")
    for seed in range(300):
        z, w, b, x = _inputs(seed, n=2)
        mean, invstd = batch_stats(z, None, None, 0.0, EPS)
        with torch.no_grad():
            pre = normalized(z, w, b, mean, invstd, shortcut(x))
        frac = torch.frac(pre * spec.frequency).abs()
        if ((frac > 0.01) & (frac < 0.99)).all() and (pre.abs() > 1e-3).all():
            break
    else:
        raise AssertionError("no seed gave a smooth point")
    args = (*(t.requires_grad_(True) for t in (z, w, b, x)), shortcut.weight, shortcut.bias)
    # the conv's parameters are the module's own: gradcheck perturbs them in place, the module sees it
    assert torch.autograd.gradcheck(lambda z, w, b, x, cw, cb: _fused(spec, shortcut, z, w, b, x), args, eps=1e-6,
                                    atol=1e-7)


@pytest.mark.parametrize("kind", ["conv", "zero_pad"])
def test_saves_z_and_x_not_the_shortcut_output(kind):
    shortcut = _shortcut(kind, torch.float32)
    z, w, b, x = (t.requires_grad_(True) for t in _inputs(3, torch.float32, n=8))
    seen, y = _saved_storages(lambda: _fused(SPECS["gaaf_relu_shift-1"], shortcut, z, w, b, x))
    big = {p for p, n in seen.items() if n >= z.numel() * z.element_size()}
    assert big == {z.untyped_storage().data_ptr(), x.untyped_storage().data_ptr()}
    y.sum().backward()
    assert all(t.grad is not None for t in (z, w, b, x, *shortcut.parameters()))


def test_frozen_shortcut_and_input_without_grad():
    """Only the gradients autograd asks for: a frozen projection gets none, an x without grad none."""
    spec, shortcut = SPECS["gaaf_tanh"], _shortcut("conv")
    shortcut.requires_grad_(False)
    z, w, b, x = _inputs(5)
    z.requires_grad_(True)
    _fused(spec, shortcut, z, w, b, x).sum().backward()
    assert z.grad is not None and shortcut.weight.grad is None and x.grad is None


def test_a_hooked_shortcut_is_called_as_a_module():
    """bn_act.fused_bn_shortcut_act recomputes a plain conv / zero-pad shortcut only: with a hook the
    shortcut runs once, as a module, and its output is the residual."""
    bn, act = nn.BatchNorm2d(3).double(), GAAF("gaaf_relu", shift=-1.0)
    shortcut, calls = _shortcut("conv"), []
    z, _, _, x = _inputs(6)
    bn_act.fused_bn_shortcut_act(bn, act, z.requires_grad_(True), shortcut, x).sum().backward()
    shortcut.register_forward_hook(lambda *a: calls.append(1))
    bn_act.fused_bn_shortcut_act(bn, act, z, shortcut, x).sum().backward()
    assert calls == [1]


@pytest.mark.parametrize("case, match", [
    ("both", "a residual, or a shortcut module"), ("no_input", "a residual, or a shortcut module"),
    ("shape", "residual must have z's shape"),
])
def test_bad_input_says_what_is_allowed(case, match):
    spec = SPECS["gaaf_tanh"]
    z, w, b, x = _inputs(7)
    kw = {"both": dict(residual=z, shortcut=_shortcut("conv"), shortcut_input=x),
          "no_input": dict(shortcut=_shortcut("conv")),
          "shape": dict(shortcut=nn.Conv2d(2, 3, 1).double(), shortcut_input=x)}[case]
    with pytest.raises(ValueError, match=match):
        bn_gaaf(z, w, b, spec, eps=EPS, **kw)
