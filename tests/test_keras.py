"""gaaf.keras.GAAF (Keras 3, torch backend) against the PyTorch op: numbers, gradients, errors, names.
What needs no torch (the formulas on any backend, config, save/load, a training step) is in
test_keras_backends.py, which CI also runs on JAX without torch."""
from __future__ import annotations

import itertools
import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere

import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # keras was imported before conftest.py set the backend: a broken setup
    pytest.fail(f"keras runs on the {keras.backend.backend()} backend; these tests need torch", pytrace=False)

import gaaf  # noqa: E402
import gaaf.keras as gk  # noqa: E402
from gaaf.activations.reference import BASES, SHAPE_DEFAULTS, VARIANTS  # noqa: E402

DTYPES = {torch.float64: "float64", torch.float32: "float32"}
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}
SHAPE_PARAMS = {"sigmoid": dict(shift=-1.0, slope=1.5), "gaussian": dict(center=0.5, width=3.0), "none": {}}


def _inputs(dtype: torch.dtype) -> torch.Tensor:
    """(2, 500): normal draws over the interesting range plus points dense within a few 1/K periods."""
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(500, generator=g, dtype=torch.float64) * 3
    dense = torch.linspace(0.99995, 1.00025, 500, dtype=torch.float64)  # three sawtooth periods
    return torch.stack([wide, dense]).to(dtype)


def _value_and_grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = fn(x)
    w = torch.linspace(-1, 1, y.numel(), dtype=x.dtype).reshape(y.shape)  # a non-uniform upstream grad
    (grad,) = torch.autograd.grad((y * w).sum(), x)
    return y.detach(), grad


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES.values()))
@pytest.mark.parametrize("base,shape,variant", list(itertools.product(BASES, SHAPE_DEFAULTS, VARIANTS)))
def test_matches_pytorch_op(base: str, shape: str, variant: str, dtype: torch.dtype) -> None:
    params = SHAPE_PARAMS[shape]
    layer = gk.GAAF(base, shape=shape, variant=variant, dtype=DTYPES[dtype], **params)
    x = _inputs(dtype)
    y_k, g_k = _value_and_grad(layer, x)
    y_t, g_t = _value_and_grad(lambda t: gaaf.functional.gaaf(t, base, shape=shape, variant=variant, **params), x)
    assert y_k.dtype == dtype
    torch.testing.assert_close(y_k, y_t, **TOL[dtype])
    torch.testing.assert_close(g_k, g_t, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["gaaf_relu", "gaaf_tanh"])
def test_half_precision_computes_in_float32_like_pytorch(name: str, dtype: torch.dtype) -> None:
    x = _inputs(torch.float32)[0]
    k_act, t_act = gk.get_activation(name, dtype=str(dtype).removeprefix("torch.")), gaaf.get_activation(name)
    y_k, g_k = _value_and_grad(k_act, x.to(dtype))
    y_t, g_t = _value_and_grad(t_act, x.to(dtype))
    assert y_k.dtype == g_k.dtype == dtype
    torch.testing.assert_close(y_k, y_t)
    torch.testing.assert_close(g_k, g_t)
    # computed in float32: for x < 0 relu's output is g(x) itself, which still varies (in half
    # precision x·K would be an integer, so g ≡ −0.5/K)
    xn = torch.linspace(-0.3, -0.1, 200).to(dtype)
    y_half = gk.GAAF("relu", shape="none", dtype=str(dtype).removeprefix("torch."), autocast=False)(xn)
    torch.testing.assert_close(y_half, gaaf.functional.gaaf(xn, "relu", shape="none"))
    assert torch.unique(y_half).numel() > 20


def test_gradient_is_accelerated_and_value_barely_moves() -> None:
    """g' = 1 ("floor") adds s(x) to φ'; the value moves by at most 0.5/K."""
    x = torch.tensor([-2.0, -0.5, 0.3, 1.7], dtype=torch.float64)
    y, grad = _value_and_grad(gk.GAAF("relu", shape="none"), x)
    w = torch.linspace(-1, 1, 4, dtype=torch.float64)
    torch.testing.assert_close(grad, w * ((x > 0).double() + 1.0))
    assert (y - torch.relu(x)).abs().max() <= 0.5 / 1e4 + 1e-15


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES.values()))
def test_surrogate_value_is_phi_and_gradient_phi_prime_plus_s(dtype: torch.dtype) -> None:
    """variant "surrogate": the value is relu(x) itself (plus an exact 0), the gradient relu' + s."""
    x = _inputs(dtype)
    y, grad = _value_and_grad(gk.GAAF("relu", shift=-1.0, variant="surrogate", dtype=DTYPES[dtype]), x)
    assert torch.equal(y, torch.relu(x))
    w = torch.linspace(-1, 1, x.numel(), dtype=dtype).reshape(x.shape)
    torch.testing.assert_close(grad, w * ((x > 0).to(dtype) + torch.sigmoid(x - 1.0)), **TOL[dtype])


@pytest.mark.parametrize("dtype,huge", [(torch.float32, 1e36), (torch.float64, 1e306)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_overflow_guard_finite_in_finite_out(dtype: torch.dtype, huge: float, variant: str) -> None:
    """Where x·K overflows: g = −0.5/K, g' = 1 (floor) or 0 (round); the surrogate's g is 0 and g' 1
    everywhere. Output and gradient finite."""
    K = 1e4
    x = torch.tensor([-huge, huge], dtype=dtype)
    assert not torch.isfinite(x * K).any()
    layer = gk.GAAF("tanh", shape="none", frequency=K, variant=variant, dtype=DTYPES[dtype])
    x_ = x.clone().requires_grad_(True)
    y = layer(x_)
    (grad,) = torch.autograd.grad(y.sum(), x_)
    torch.testing.assert_close(y, torch.tanh(x) - (0.0 if variant == "surrogate" else 0.5 / K))
    expected_grad = torch.full_like(x, 0.0 if variant == "round" else 1.0)  # tanh'(±huge) = 0
    torch.testing.assert_close(grad, expected_grad)
    # the PyTorch op has the same guard (the naive reference would give nan here)
    xt = x.clone().requires_grad_(True)
    y_t = gaaf.functional.gaaf(xt, "tanh", shape="none", frequency=K, variant=variant)
    (g_t,) = torch.autograd.grad(y_t.sum(), xt)
    torch.testing.assert_close(y.detach(), y_t.detach())
    torch.testing.assert_close(grad, g_t)


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES.values()))
@pytest.mark.parametrize("base", list(BASES))
def test_every_base_at_the_edges_matches_pytorch(base: str, dtype: torch.dtype) -> None:
    """±max (gelu's x·Φ(x) is where backends overflow), x·K overflowing, x·K beyond 2²⁴ (where a
    float32 floor of a float64 x·K is wrong), the bases' saturation points: finite, and the same
    value and gradient as the PyTorch op, for both variants."""
    fi = torch.finfo(dtype)
    mags = [fi.max, fi.max / 2, 3.3895e38, fi.max / 1e4 * 1.01, 1e30, 5e10 + 0.123, 1234.56789, 745.5, 100.0,
            40.5, 39.5, 20.5, 3.0, 0.25, 0.0]
    x = torch.tensor([s * m for m in mags if m <= fi.max for s in (1.0, -1.0)] * 3, dtype=dtype)
    for variant in VARIANTS:
        layer = gk.GAAF(base, shape="sigmoid", variant=variant, dtype=DTYPES[dtype], **SHAPE_PARAMS["sigmoid"])
        y_k, g_k = _value_and_grad(layer, x)
        y_t, g_t = _value_and_grad(lambda t: gaaf.functional.gaaf(t, base, shape="sigmoid", variant=variant,
                                                                  **SHAPE_PARAMS["sigmoid"]), x)
        assert torch.isfinite(y_k).all() and torch.isfinite(g_k).all(), (variant, x[~torch.isfinite(y_k * g_k)])
        torch.testing.assert_close(y_k, y_t, **TOL[dtype])
        torch.testing.assert_close(g_k, g_t, **TOL[dtype])


def test_validation_errors_match_pytorch() -> None:
    bad = [
        dict(base="swish"),
        dict(variant="ceil"),
        dict(frequency=0.0),
        dict(frequency=float("inf")),
        dict(shape="cosine"),
        dict(shape="sigmoid", centre=1.0),
        dict(shape="gaussian", width=-1.0),
        dict(shape="none", shift=1.0),
    ]
    for kwargs in bad:
        with pytest.raises(ValueError) as torch_err:
            gaaf.GAAF(**kwargs)
        with pytest.raises(ValueError) as keras_err:
            gk.GAAF(**kwargs)
        assert str(keras_err.value) == str(torch_err.value), kwargs


@keras.saving.register_keras_serializable(package="gaaf_tests")
def bump(x):
    """A callable shape s(x) written with keras.ops."""
    return keras.ops.exp(-keras.ops.abs(x))


def test_callable_shape_matches_and_round_trips() -> None:
    layer = gk.GAAF("relu", shape=bump)
    x = _inputs(torch.float64)[0]
    y_k, g_k = _value_and_grad(gk.GAAF("relu", shape=bump, dtype="float64"), x)
    y_t, g_t = _value_and_grad(lambda t: gaaf.functional.gaaf(t, "relu", shape=lambda u: torch.exp(-u.abs())), x)
    torch.testing.assert_close(y_k, y_t, **TOL[torch.float64])
    torch.testing.assert_close(g_k, g_t, **TOL[torch.float64])
    clone = gk.GAAF.from_config(layer.get_config())
    assert clone.spec.shape is bump


def test_get_activation_names_mirror_pytorch_registry() -> None:
    torch_names = {n for n in gaaf.list_activations()}
    assert set(gk.list_activations()) <= torch_names
    assert {"relu", "tanh", "sigmoid", "gaaf_relu", "gaaf_tanh", "gaaf_sigmoid", "gaaf"} <= set(gk.list_activations())
    x = _inputs(torch.float32)[0]
    for name in gk.list_activations():
        if name == "gaaf":
            continue
        k_act, t_act = gk.get_activation(name), gaaf.get_activation(name)
        if isinstance(t_act, gaaf.GAAF):
            assert k_act.spec == t_act.spec, name
        y_k, g_k = _value_and_grad(k_act, x)
        y_t, g_t = _value_and_grad(t_act, x)
        torch.testing.assert_close(y_k, y_t, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(g_k, g_t, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("base", list(BASES))
def test_preset_names_and_defaults_match_pytorch(base: str) -> None:
    """gaaf.keras.GAAF takes preset names and has the same per-base defaults as gaaf.GAAF."""
    spec = gaaf.GAAF(base).spec
    assert gk.GAAF(base).spec == spec == gk.GAAF(f"gaaf_{base}").spec == gk.get_activation(f"gaaf_{base}").spec
    assert gk.GAAF.from_config(gk.GAAF(f"gaaf_{base}").get_config()).spec == spec
    explicit = {"sigmoid": {"shift": -1.0}, "gaussian": {"width": 2.0}}[spec.shape]  # explicit wins
    assert gk.GAAF(base, **explicit).spec == gaaf.GAAF(base, **explicit).spec
    assert {k: gk.GAAF(base, **explicit).spec.shape_params[k] for k in explicit} == explicit
