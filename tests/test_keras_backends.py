r"""gaaf.keras.GAAF on whichever Keras backend runs the tests, against the plain formulas in NumPy
(float64) through the backend's own autodiff (jax.vjp, torch.autograd, tf.GradientTape); and
config, save/load and a training step. Needs no PyTorch: CI runs this file on the torch backend
(scripts/env.sh) and on JAX without torch installed (scripts/env-keras-jax.sh).

The reference is the catalog's table (:mod:`gaaf.activations.catalog`): value φ + g·s and gradient
φ' + g'·s + g·s', with g' = 1 ("floor"), sign(r) ("round"); "surrogate": value φ, gradient φ' + s.
For float32 inputs x·K and its fractional part are taken in float32 (one correctly rounded
multiply, then exact subtractions), as the layer does, so the sawtooth's jumps fall at the same x;
everything else is float64.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
BACKEND = keras.backend.backend()
if BACKEND == "jax":  # float64 arrays need x64 (JAX computes in float32 otherwise)
    import jax

    jax.config.update("jax_enable_x64", True)

import gaaf.keras as gk  # noqa: E402
from gaaf.activations.catalog import BASES, SHAPE_DEFAULTS, VARIANTS  # noqa: E402
from gaaf.activations.spec import GAAFSpec  # noqa: E402

K = 1e4
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-6)}
SHAPE_PARAMS = {"sigmoid": dict(shift=-1.0, slope=1.5), "gaussian": dict(center=0.5, width=3.0), "none": {}}


# ---------------------------------------------------------------------- the plain formulas, NumPy
def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf, otypes=[float])(x / math.sqrt(2)))


#: base → (φ, φ'), PyTorch's default parameters (the catalog's table)
PHI = {
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1.0, 0.01)),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))),
    "gelu": (lambda x: x * _cdf(x), lambda x: _cdf(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "silu": (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    "softplus": (lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))),
                 lambda x: np.where(x > 20, 1.0, _sigmoid(x))),
}


def shape_ref(x: np.ndarray, shape: str, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(s, s') of a named shape with all its parameters."""
    if shape == "sigmoid":
        s = _sigmoid(p["slope"] * (x + p["shift"]))
        return s, p["slope"] * s * (1 - s)
    if shape == "gaussian":
        s = np.exp(-((x - p["center"]) ** 2) / p["width"])
        return s, -2 * (x - p["center"]) / p["width"] * s
    return np.ones_like(x), np.zeros_like(x)


def sawtooth_ref(x: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """(g, g') in float64 from x·K taken in x's own dtype; where x·K overflows the frac part is 0."""
    y = x * x.dtype.type(K)
    y = np.where(np.isfinite(y), y, 0)
    if variant == "floor":
        return ((y - np.floor(y)).astype(np.float64) - 0.5) / K, np.ones(x.shape)
    r = (y - np.round(y)).astype(np.float64)  # round half to even, as every backend
    return (np.abs(r) - 0.5) / K, np.sign(r)


def gaaf_ref(x: np.ndarray, base: str, shape: str, variant: str, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(value, derivative) of GAAF at x, in float64."""
    x64 = x.astype(np.float64)
    phi, dphi = PHI[base][0](x64), PHI[base][1](x64)
    s, ds = shape_ref(x64, shape, p)
    if variant == "surrogate":
        return phi, dphi + s
    g, dg = sawtooth_ref(x, variant)
    return phi + g * s, dphi + dg * s + g * ds


# ---------------------------------------------------------------------- the backend's autodiff
def value_and_grad(fn, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fn(x), the vector-Jacobian product with w, w): w a non-uniform upstream gradient in x's dtype."""
    w = np.linspace(-1, 1, x.size).reshape(x.shape).astype(x.dtype)
    if BACKEND == "jax":
        y, vjp = jax.vjp(fn, jax.numpy.asarray(x))
        (g,) = vjp(jax.numpy.asarray(w))
    elif BACKEND == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        y = fn(xt)
        (g,) = torch.autograd.grad(y, xt, torch.as_tensor(w))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        g = tape.gradient(y, xt, output_gradients=tf.constant(w))
    else:
        pytest.skip(f"the {BACKEND} backend has no autodiff")
    to_np = keras.ops.convert_to_numpy
    return to_np(y), to_np(g), w


def _inputs(dtype: str) -> np.ndarray:
    """(2, 500): normal draws over the interesting range plus points dense within three 1/K periods."""
    wide = np.random.default_rng(0).normal(size=500) * 3
    dense = np.linspace(0.99995, 1.00025, 500)
    return np.stack([wide, dense]).astype(dtype)


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str, what: str) -> None:
    np.testing.assert_allclose(actual.astype(np.float64), expected, **TOL[dtype], err_msg=f"{what} on {BACKEND}")


# ---------------------------------------------------------------------- numbers and gradients
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("base,shape,variant", list(itertools.product(BASES, SHAPE_DEFAULTS, VARIANTS)))
def test_matches_the_formulas(base: str, shape: str, variant: str, dtype: str) -> None:
    p = {**SHAPE_DEFAULTS[shape], **SHAPE_PARAMS[shape]}
    layer = gk.GAAF(base, shape=shape, variant=variant, dtype=dtype, **SHAPE_PARAMS[shape])
    x = _inputs(dtype)
    y, g, w = value_and_grad(layer, x)
    y_ref, dy_ref = gaaf_ref(x, base, shape, variant, p)
    assert y.dtype == g.dtype == np.dtype(dtype)
    assert_close(y, y_ref, dtype, "value")
    assert_close(g, w * dy_ref, dtype, "gradient")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("base", list(BASES))
def test_every_base_at_the_edges(base: str, dtype: str) -> None:
    """±max, x·K overflowing, x·K beyond 2²⁴, the bases' saturation points, 0: finite, and the
    formulas' value and gradient (where x·K overflows g = −0.5/K, g' = 1 floor, 0 round)."""
    fi = np.finfo(dtype)
    mags = [fi.max, fi.max / 2, 3.3895e38, fi.max / K * 1.01, 1e30, 5e10 + 0.123, 1234.56789, 745.5, 100.0,
            40.5, 39.5, 20.5, 3.0, 0.25, 0.0]
    x = np.array([s * m for m in mags if m <= fi.max for s in (1.0, -1.0)], dtype=dtype)
    p = {**SHAPE_DEFAULTS["sigmoid"], **SHAPE_PARAMS["sigmoid"]}
    for variant in VARIANTS:
        layer = gk.GAAF(base, shape="sigmoid", variant=variant, dtype=dtype, **SHAPE_PARAMS["sigmoid"])
        y, g, w = value_and_grad(layer, x)
        assert np.isfinite(y).all() and np.isfinite(g).all(), (variant, x[~np.isfinite(y * g)])
        with np.errstate(over="ignore", invalid="ignore"):
            y_ref, dy_ref = gaaf_ref(x, base, "sigmoid", variant, p)
        assert_close(y, y_ref, dtype, f"{variant} value")
        assert_close(g, w * dy_ref, dtype, f"{variant} gradient")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["gaaf_relu", "gaaf_tanh"])
def test_half_precision_is_computed_in_float32(name: str, dtype: str) -> None:
    """The same numbers as the float32 layer on the same inputs, cast back; gradients in `dtype`."""
    x = keras.ops.cast(keras.ops.convert_to_tensor(_inputs("float32")[0]), dtype)
    y_half = gk.get_activation(name, dtype=dtype, autocast=False)(x)
    y_float = gk.get_activation(name, dtype="float32")(keras.ops.cast(x, "float32"))
    assert keras.backend.standardize_dtype(y_half.dtype) == dtype
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(y_float, dtype)).astype(np.float32),
                                  keras.ops.convert_to_numpy(y_half).astype(np.float32))
    # for x < 0 relu's output is g(x) itself: it varies (in half precision x·K would be an integer)
    xn = keras.ops.cast(keras.ops.linspace(-0.3, -0.1, 200), dtype)
    y_neg = gk.GAAF("relu", shape="none", dtype=dtype, autocast=False)(xn)
    assert np.unique(keras.ops.convert_to_numpy(y_neg).astype(np.float32)).size > 20


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_surrogate_value_is_phi_exactly(dtype: str) -> None:
    x = _inputs(dtype)
    y, g, w = value_and_grad(gk.GAAF("relu", shift=-1.0, variant="surrogate", dtype=dtype), x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert_close(g, w * ((x > 0) + _sigmoid(x.astype(np.float64) - 1.0)), dtype, "gradient")


@keras.saving.register_keras_serializable(package="gaaf_tests_any_backend")
def bump(x):
    """A callable shape s(x) = exp(−|x|), written with keras.ops."""
    return keras.ops.exp(-keras.ops.abs(x))


def test_callable_shape_matches_and_round_trips() -> None:
    x = _inputs("float64")[0]
    y, g, w = value_and_grad(gk.GAAF("relu", shape=bump, dtype="float64"), x)
    gs, dgs = sawtooth_ref(x, "floor")
    s = np.exp(-np.abs(x))
    assert_close(y, np.maximum(x, 0) + gs * s, "float64", "value")
    assert_close(g, w * ((x > 0) + dgs * s - gs * np.sign(x) * s), "float64", "gradient")
    layer = gk.GAAF("relu", shape=bump)
    assert gk.GAAF.from_config(layer.get_config()).spec.shape is bump


# ---------------------------------------------------------------------- layer API, config, models
def test_validation_errors_are_the_specs() -> None:
    """The Keras layer rejects exactly what GAAFSpec (and so gaaf.GAAF) rejects, with its message."""
    bad = [dict(base="swish"), dict(variant="ceil"), dict(frequency=0.0), dict(frequency=float("inf")),
           dict(shape="cosine"), dict(shape="sigmoid", centre=1.0), dict(shape="gaussian", width=-1.0),
           dict(shape="none", shift=1.0)]
    for kwargs in bad:
        args = {"base": "relu", "shape": None, "frequency": K, "variant": "floor", **kwargs}
        with pytest.raises(ValueError) as spec_err:
            GAAFSpec.build(args.pop("base"), args.pop("shape"), args.pop("frequency"), args.pop("variant"), **args)
        with pytest.raises(ValueError) as keras_err:
            gk.GAAF(**kwargs)
        assert str(keras_err.value) == str(spec_err.value), kwargs


def test_config_round_trip() -> None:
    layer = gk.GAAF("tanh", shape="gaussian", width=2.0, center=0.25, frequency=500.0, variant="round", name="act")
    config = layer.get_config()
    assert config["base"] == "tanh" and config["shape"] == "gaussian" and config["width"] == 2.0
    clone = gk.GAAF.from_config(config)
    assert clone.spec == layer.spec and clone.name == "act"
    generic = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(generic, gk.GAAF) and generic.spec == layer.spec


def _tiny_model(act) -> "keras.Model":
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), act, keras.layers.Dense(2)])


def test_save_and_load_model(tmp_path) -> None:
    model = _tiny_model(gk.get_activation("gaaf_relu", shift=-1.0, variant="round"))
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    act = loaded.layers[1]
    assert isinstance(act, gk.GAAF) and act.spec == model.layers[1].spec
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))


def test_tiny_model_trains_a_step() -> None:
    model = _tiny_model(gk.get_activation("gaaf_tanh"))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert np.isfinite(history.history["loss"][0])
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))


@pytest.mark.parametrize("base", list(BASES))
def test_presets_have_the_bases_own_defaults(base: str) -> None:
    spec = GAAFSpec.build(base)
    assert gk.GAAF(base).spec == spec == gk.GAAF(f"gaaf_{base}").spec == gk.get_activation(f"gaaf_{base}").spec
    assert gk.GAAF.from_config(gk.GAAF(f"gaaf_{base}").get_config()).spec == spec


def test_get_activation_options_and_errors() -> None:
    act = gk.get_activation("gaaf_relu", shape="none")
    assert act.spec.shape == "none" and act.spec.shape_params == {}
    assert isinstance(gk.get_activation(None), keras.layers.Identity)
    assert isinstance(gk.get_activation("relu"), keras.layers.ReLU)
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of: elu, gaaf"):
        gk.get_activation("swish")
    with pytest.raises(ValueError, match="did you mean 'gaaf_relu'"):
        gk.get_activation("relu", shift=1.0)
