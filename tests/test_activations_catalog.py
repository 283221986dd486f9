"""The one table of names (catalog), the shared preset resolver, the hashable spec, the kernel cache
keyed by spec, and the pure-Python modules (spec, presets, gaaf.keras) importing without torch."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gaaf
from gaaf.activations import catalog, fused, kernels, pointwise, presets, reference, registry
from gaaf.activations.spec import GAAFSpec, ShapeParams

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the table
def test_every_implementation_table_has_the_catalog_names():
    for table in (reference.BASES, pointwise.BASE_MATH, registry.PLAIN_ACTIVATIONS):
        assert tuple(table) == catalog.BASES
    assert set(pointwise.SHAPE_MATH) == set(catalog.SHAPE_DEFAULTS) == set(reference.SHAPE_DEFAULTS)
    assert reference.VARIANTS == catalog.VARIANTS and reference.DEFAULT_FREQUENCY == catalog.DEFAULT_FREQUENCY


def test_check_names_reports_missing_and_unexpected():
    catalog.check_names({"relu": 1, "tanh": 2}, ("relu", "tanh"), "t")  # equal: no error
    with pytest.raises(RuntimeError, match=r"t: missing \['tanh'\], unexpected \['swish'\]"):
        catalog.check_names({"relu": 1, "swish": 2}, ("relu", "tanh"), "t")


def test_catalog_defaults_are_read_only():
    with pytest.raises(TypeError):
        catalog.SHAPE_DEFAULTS["sigmoid"]["shift"] = 1.0  # type: ignore[index]


# --------------------------------------------------------------------------- the resolver
def test_resolve_plain_preset_and_gaaf():
    assert presets.resolve_activation(" ReLU ") == ("plain", "relu")
    assert presets.resolve_activation("gaaf_relu", shift=-1.0) == ("gaaf", {"base": "relu", "shift": -1.0})
    assert presets.resolve_activation("gaaf_tanh", shape="none") == ("gaaf", {"base": "tanh", "shape": "none"})
    assert presets.resolve_activation("gaaf", base="elu", width=2.0) == ("gaaf", {"base": "elu", "width": 2.0})
    assert presets.resolve_activation("gaaf_elu", base="gaaf_elu") == ("gaaf", {"base": "elu"})  # the same base
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of: elu, gaaf, gaaf_elu"):
        presets.resolve_activation("swish")
    with pytest.raises(ValueError, match=r"'gaaf_relu' is GAAF on 'relu', got base='tanh' \(use 'gaaf' with base"):
        presets.resolve_activation("gaaf_relu", base="tanh")


def test_plain_activation_with_parameters_message():
    """The registry's message names the activation once, so a caller can prefix "activation "."""
    with pytest.raises(ValueError) as err:
        presets.resolve_activation("Relu", shift=1.0, slope=2.0)
    assert str(err.value) == "'relu' takes no parameters, got shift, slope (did you mean 'gaaf_relu'?)"


def test_presets_are_the_bases_own_defaults():
    assert dict(presets.GAAF_PRESETS["gaaf_relu"]) == {"base": "relu", "shape": "sigmoid", "shift": 4.0}
    assert dict(presets.GAAF_PRESETS["gaaf_tanh"]) == {"base": "tanh", "shape": "gaussian", "width": 3.0}
    assert dict(presets.GAAF_PRESETS["gaaf_sigmoid"]) == {"base": "sigmoid", "shape": "gaussian", "width": 12.0}
    for base in ("leaky_relu", "elu", "gelu", "silu", "softplus"):
        assert presets.GAAF_PRESETS[f"gaaf_{base}"] == {"base": base, "shape": "sigmoid", "shift": 4.0}
    assert catalog.shape_defaults("relu", "sigmoid") == {"shift": 4.0, "slope": 1.0}
    assert catalog.shape_defaults("relu", "gaussian") == {"center": 0.0, "width": 3.0}  # not relu's own shape
    assert catalog.shape_defaults("sigmoid", "sigmoid") == {"shift": 0.0, "slope": 1.0}
    assert catalog.base_of("gaaf_gelu") == catalog.base_of("gelu") == "gelu"
    assert catalog.base_of("gaaf") is None and catalog.base_of("gaaf_gaaf_relu") is None and catalog.base_of(3) is None


def test_registry_and_keras_names_are_the_resolvers():
    assert set(presets.builtin_activations()) <= set(gaaf.list_activations())
    for name in presets.builtin_activations():
        kind, value = presets.resolve_activation(name)
        act = gaaf.get_activation(name)
        if kind == "plain":
            assert type(act) is registry.PLAIN_ACTIVATIONS[value]
        else:
            assert act.spec == GAAFSpec.build(**value)


# --------------------------------------------------------------------------- hashable spec
def test_spec_is_hashable_and_equal_specs_hash_equal():
    a = GAAFSpec.build("relu", "sigmoid", shift=-1.0)
    b = GAAFSpec.build("relu", "sigmoid", 1e4, "floor", slope=1, shift=-1)  # other spellings, same values
    c = GAAFSpec.build("relu", "sigmoid", shift=-1.0, variant="round")
    assert a == b and hash(a) == hash(b) and a is not b
    assert a != c
    assert len({a, b, c}) == 2
    assert {a: 1}[b] == 1


def test_shape_params_are_an_immutable_mapping():
    spec = GAAFSpec.build("tanh", "gaussian", width=2.0)
    p = spec.shape_params
    assert p == {"center": 0.0, "width": 2.0} and dict(p) == {"center": 0.0, "width": 2.0}
    assert p["width"] == 2.0 and list(p) == ["center", "width"] and len(p) == 2
    with pytest.raises(TypeError):
        p["width"] = 5.0  # type: ignore[index]
    assert ShapeParams(b=1.0, a=2.0) == ShapeParams({"a": 2.0, "b": 1.0})
    assert hash(ShapeParams(b=1.0, a=2.0)) == hash(ShapeParams({"a": 2.0, "b": 1.0}))
    with pytest.raises(TypeError, match="GAAFSpec.build"):  # a dict would make the spec unhashable
        GAAFSpec("relu", "sigmoid", 1e4, "floor", {"shift": 0.0, "slope": 1.0})  # type: ignore[arg-type]


def test_callable_shape_spec_is_hashable():
    spec = GAAFSpec.build("relu", torch.tanh)
    assert hash(spec) == hash(GAAFSpec.build("relu", torch.tanh))


# --------------------------------------------------------------------------- kernel cache
def test_kernel_cache_is_keyed_by_spec(monkeypatch):
    """Equal specs (separate objects) share one pair of kernels; a different spec gets its own.
    `_build` is replaced by one that records and runs the plain math: no compiling here."""
    built = []

    class Plain:
        def __init__(self, fn):
            self.run = fn

    def fake_build(spec, name, dtype, device_type):
        built.append(spec)
        return Plain(lambda x: pointwise._fwd(x, spec)), Plain(lambda x, g: pointwise._bwd(x, g, spec))

    kernels._reset_for_tests()
    monkeypatch.setattr(kernels, "_build", fake_build)
    fused.set_eager_compile(True)
    try:
        x = torch.randn(kernels.EAGER_COMPILE_MIN_NUMEL)
        a, b = GAAFSpec.build("relu", shift=-1.0), GAAFSpec.build("relu", shift=-1.0)
        c = GAAFSpec.build("relu", shift=-2.0)
        for spec in (a, b, c, a):
            torch.testing.assert_close(kernels.forward_flat(x, spec), pointwise._fwd(x, spec), rtol=0, atol=0)
            kernels.backward_flat(x, torch.ones_like(x), spec)
        assert built == [a, c]
        assert set(kernels._cache) == {kernels.cache_key(a, x), kernels.cache_key(c, x)}
    finally:
        fused.set_eager_compile(None)
        kernels._reset_for_tests()


# --------------------------------------------------------------------------- no torch
#: run first in a child interpreter: any import of torch fails, as where torch is not installed
_NO_TORCH = '''
import importlib.abc, sys, types

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
try:
    import torch
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the torch blocker does not block")
'''

#: a stand-in for Keras 3 with just what gaaf.keras touches when it is imported and a layer built
_FAKE_KERAS = '''
class Layer:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

keras = types.ModuleType("keras")
keras.__version__ = "3.0.0"
keras.layers = types.SimpleNamespace(Layer=Layer, Identity=Layer)
keras.saving = types.SimpleNamespace(register_keras_serializable=lambda package: (lambda cls: cls))
ops = types.ModuleType("keras.ops")
ops.__getattr__ = lambda name: (lambda *args, **kwargs: None)
keras.ops = ops
sys.modules["keras"], sys.modules["keras.ops"] = keras, ops
'''


def _run_without_torch(code: str, prelude: str = "") -> None:
    env_path = str(ROOT / "src")
    run = subprocess.run([sys.executable, "-c", _NO_TORCH + prelude + textwrap.dedent(code) + "\nprint('ok')"],
                         cwd=ROOT, env={"PYTHONPATH": env_path, "PATH": ""}, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_spec_and_presets_import_without_torch():
    _run_without_torch('''
        import gaaf
        from gaaf.activations import catalog, presets
        from gaaf.activations.spec import GAAFSpec
        spec = GAAFSpec.build(**presets.resolve_activation("gaaf_relu", shift=-1.0)[1])
        assert spec.shape_params == {"shift": -1.0, "slope": 1.0} and hash(spec) == hash(GAAFSpec.build(shift=-1.0))
        try:
            GAAFSpec.build("swish")
        except ValueError as e:
            assert "unknown base activation 'swish'" in str(e)
        assert "torch" not in sys.modules
    ''')


def test_gaaf_keras_imports_without_torch():
    _run_without_torch(prelude=_FAKE_KERAS, code='''
        import gaaf.keras as gk
        from gaaf.activations.spec import GAAFSpec
        assert gk.GAAF("relu", shift=-1.0, name="act").spec == GAAFSpec.build("relu", shift=-1.0)
        assert gk.get_activation("gaaf_tanh").spec == GAAFSpec.build("tanh", "gaussian", width=3.0)
        assert "gaaf_relu" in gk.list_activations()
        assert "torch" not in sys.modules
    ''')
