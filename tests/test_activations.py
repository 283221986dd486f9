"""Registry, spec validation and the GAAF module (the fused op's math is in test_activations_math.py)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gaaf
from gaaf.activations import fused, reference, registry
from gaaf.activations.spec import GAAFSpec


@pytest.fixture(autouse=True)
def _plain_eager():
    fused.set_eager_compile(False)  # compiled kernels are tested in test_activations_fused.py
    yield
    fused.set_eager_compile(None)


# --------------------------------------------------------------------------- registry
def test_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        gaaf.get_activation("gaaf_rleu")
    msg = str(err.value)
    assert "'gaaf_rleu'" in msg and "choose one of" in msg
    for name in ("relu", "gaaf_relu", "gaaf_tanh", "gaaf_sigmoid", "gaaf"):
        assert name in msg


def test_list_activations_has_plain_and_presets():
    names = gaaf.list_activations()
    assert names == sorted(names)
    for base in reference.BASES:
        assert base in names and f"gaaf_{base}" in names


def test_duplicate_register_raises_and_overwrite_replaces():
    name = "test_activations_dup"
    try:
        gaaf.register_activation(name, nn.ReLU)
        with pytest.raises(ValueError, match="already registered"):
            gaaf.register_activation(name, nn.Tanh)
        assert isinstance(gaaf.get_activation(name), nn.ReLU)
        gaaf.register_activation(name, nn.Tanh, overwrite=True)
        assert isinstance(gaaf.get_activation(name), nn.Tanh)
    finally:
        registry._REGISTRY.pop(name, None)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_register_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        gaaf.register_activation(bad, nn.ReLU)  # type: ignore[arg-type]


def test_register_rejects_non_callable_factory():
    with pytest.raises(ValueError, match="must be callable"):
        gaaf.register_activation("test_activations_bad_factory", 42)  # type: ignore[arg-type]


def test_classes_factories_instances_and_none():
    assert isinstance(gaaf.get_activation(None), nn.Identity)
    assert isinstance(gaaf.get_activation(nn.SiLU), nn.SiLU)
    act = gaaf.get_activation(lambda **p: gaaf.GAAF("tanh", shape="gaussian", **p), width=5.0)
    assert isinstance(act, gaaf.GAAF) and act.spec.shape_params["width"] == 5.0
    inst = nn.ELU()
    assert gaaf.get_activation(inst) is inst
    with pytest.raises(ValueError, match="instance"):
        gaaf.get_activation(inst, alpha=2.0)
    with pytest.raises(ValueError, match="not an nn.Module"):
        gaaf.get_activation(lambda: 3)
    with pytest.raises(ValueError, match="name, an nn.Module class or factory"):
        gaaf.get_activation(3.5)  # type: ignore[arg-type]


def test_names_are_case_and_space_insensitive():
    assert isinstance(gaaf.get_activation("  ReLU "), nn.ReLU)


def test_plain_activation_rejects_params_with_hint():
    with pytest.raises(ValueError, match=r"^'relu' takes no parameters, got shift \(did you mean 'gaaf_relu'\?\)$"):
        gaaf.get_activation("relu", shift=1.0)


def test_preset_defaults_and_overrides():
    act = gaaf.get_activation("gaaf_relu")
    assert act.spec == GAAFSpec.build("relu", "sigmoid", shift=4.0)
    act = gaaf.get_activation("gaaf_relu", shift=-1.0, variant="round")
    assert act.spec.base == "relu" and act.spec.variant == "round"
    assert dict(act.spec.shape_params) == {"shift": -1.0, "slope": 1.0}
    assert dict(gaaf.get_activation("gaaf_tanh").spec.shape_params) == {"center": 0.0, "width": 3.0}
    assert gaaf.get_activation("gaaf_sigmoid").spec.shape_params["width"] == 12.0
    assert gaaf.get_activation("gaaf_gelu", frequency=100.0).spec.frequency == 100.0


def test_preset_with_new_shape_drops_preset_shape_params():
    act = gaaf.get_activation("gaaf_relu", shape="none")
    assert act.spec.shape == "none" and dict(act.spec.shape_params) == {}
    act = gaaf.get_activation("gaaf_relu", shape="gaussian", width=2.0)
    assert dict(act.spec.shape_params) == {"center": 0.0, "width": 2.0}


# --------------------------------------------------------------------------- one set of defaults
@pytest.mark.parametrize("base", list(reference.BASES))
def test_gaaf_of_a_base_is_its_preset(base):
    """GAAF(base), GAAF("gaaf_<base>"), the functional op, GAAFSpec.build and get_activation all
    give the same spec: the base's own shape and parameters."""
    preset = gaaf.get_activation(f"gaaf_{base}").spec
    assert gaaf.GAAF(base).spec == preset == gaaf.GAAF(f"gaaf_{base}").spec
    assert GAAFSpec.build(base) == GAAFSpec.build(f"gaaf_{base}") == preset
    assert gaaf.get_activation("gaaf", base=base).spec == preset
    assert hash(gaaf.GAAF(base).spec) == hash(preset)
    x = torch.randn(64, dtype=torch.float64)
    assert torch.equal(gaaf.functional.gaaf(x, base), gaaf.functional.gaaf(x, f"gaaf_{base}"))
    assert torch.equal(gaaf.functional.gaaf(x, base), gaaf.get_activation(f"gaaf_{base}")(x))
    assert (gaaf.functional.gaaf(x, base) - reference.gaaf_reference(x, base)).abs().max() <= 1e-12


def test_default_table():
    assert gaaf.GAAF("relu").spec == GAAFSpec.build("relu", "sigmoid", shift=4.0, slope=1.0)
    assert gaaf.GAAF().spec == gaaf.GAAF("relu").spec
    for base in ("leaky_relu", "elu", "gelu", "silu", "softplus"):
        assert gaaf.GAAF(base).spec.shape == "sigmoid" and gaaf.GAAF(base).spec.shape_params["shift"] == 4.0
    assert gaaf.GAAF("tanh").spec == GAAFSpec.build("tanh", "gaussian", center=0.0, width=3.0)
    assert gaaf.GAAF("sigmoid").spec == GAAFSpec.build("sigmoid", "gaussian", center=0.0, width=12.0)


def test_explicit_parameters_win():
    assert dict(gaaf.GAAF("relu", shift=-1.0).spec.shape_params) == {"shift": -1.0, "slope": 1.0}
    assert dict(gaaf.GAAF("relu", shift=0.0).spec.shape_params) == {"shift": 0.0, "slope": 1.0}
    assert gaaf.GAAF("sigmoid", width=5.0).spec.shape_params["width"] == 5.0
    assert dict(gaaf.GAAF("relu", "sigmoid").spec.shape_params) == {"shift": 4.0, "slope": 1.0}  # its own shape
    # another shape takes that shape's defaults, as a preset given a new shape always did
    assert dict(gaaf.GAAF("relu", "gaussian").spec.shape_params) == {"center": 0.0, "width": 3.0}
    assert dict(gaaf.GAAF("sigmoid", "sigmoid").spec.shape_params) == {"shift": 0.0, "slope": 1.0}
    assert gaaf.GAAF("gaaf_tanh", shape="none", variant="round", frequency=50).spec == GAAFSpec.build(
        "tanh", "none", 50.0, "round")


def test_a_training_config_builds_the_same_module():
    """gaaf train passes activation_params(config) to get_activation: gaaf_relu is still shift 4,
    --shift -1 still −1, --shape none still no parameters."""
    def built(config):
        return gaaf.get_activation(config["activation"], **gaaf.activations.activation_params(config)).spec

    base = {"activation": "gaaf_relu", "shape": None, "shift": None, "slope": None, "frequency": None}
    assert built(base) == GAAFSpec.build("relu", "sigmoid", 1e4, "floor", shift=4.0, slope=1.0)
    assert built({**base, "shift": -1.0}) == GAAFSpec.build("relu", "sigmoid", shift=-1.0, slope=1.0)
    assert built({**base, "shape": "none"}) == GAAFSpec.build("relu", "none")
    assert built({"activation": "gaaf_tanh", "width": 2.0}) == GAAFSpec.build("tanh", "gaussian", width=2.0)


def test_is_gaaf_activation():
    assert registry.is_gaaf_activation("gaaf") and registry.is_gaaf_activation("gaaf_tanh")
    assert not registry.is_gaaf_activation("relu")


def test_activation_params_are_every_gaaf_keyword():
    shape_params = {k for params in reference.SHAPE_DEFAULTS.values() for k in params}
    assert set(gaaf.activations.ACTIVATION_PARAMS) == {"shape", "frequency", "variant"} | shape_params
    config = {"activation": "gaaf_relu", "shift": -1.0, "slope": None, "variant": "round", "epochs": 3}
    assert gaaf.activations.activation_params(config) == {"shift": -1.0, "variant": "round"}


# --------------------------------------------------------------------------- spec validation
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(frequency=0.0), "frequency must be a finite number > 0"),
        (dict(frequency=-10.0), "frequency must be a finite number > 0"),
        (dict(frequency=math.nan), "frequency must be a finite number"),
        (dict(frequency=math.inf), "frequency must be a finite number"),
        (dict(frequency="fast"), "frequency must be a finite number"),
        (dict(shape="gaussian", width=0.0), "width must be a finite number > 0"),
        (dict(shape="gaussian", width=-3.0), "width must be a finite number > 0"),
        (dict(shape="gaussian", center=math.inf), "center must be a finite number"),
        (dict(shift=math.nan), "shift must be a finite number"),
        (dict(slope=-math.inf), "slope must be a finite number"),
        (dict(width=3.0), "shape 'sigmoid' takes shift, slope; got unexpected width"),
        (dict(shape="none", shift=1.0), "shape 'none' takes no parameters; got unexpected shift"),
        (dict(shape=torch.tanh, width=1.0), "callable shape takes no shape parameters"),
        (dict(base="swish"), "unknown base activation 'swish'; choose one of: elu, gelu"),
        (dict(variant="ceil"), "unknown variant 'ceil'; choose one of: floor, round, surrogate"),
        (dict(shape="cosine"), "unknown shape 'cosine'; choose one of: gaussian, none, sigmoid"),
    ],
)
def test_spec_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        GAAFSpec.build(**kwargs)
    with pytest.raises(ValueError):
        gaaf.GAAF(**kwargs)


def test_spec_fills_defaults_and_accepts_ints():
    spec = GAAFSpec.build("tanh", "gaussian", 100, width=2)
    assert spec.frequency == 100.0 and isinstance(spec.frequency, float)
    assert dict(spec.shape_params) == {"center": 0.0, "width": 2.0}


# --------------------------------------------------------------------------- module
def test_extra_repr_is_readable():
    act = gaaf.GAAF("relu", shift=-1.0)
    assert repr(act) == (
        "GAAF(base='relu', shape='sigmoid', shift=-1.0, slope=1.0, frequency=10000.0, variant='floor')"
    )

    def bump(x):
        return torch.sigmoid(x)

    assert "shape='bump'" in repr(gaaf.GAAF("tanh", shape=bump, variant="round"))


def test_module_in_sequential_trains():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), gaaf.get_activation("gaaf_relu", shift=-1.0), nn.Linear(16, 1))
    ref = nn.Sequential(nn.Linear(6, 16), nn.Identity(), nn.Linear(16, 1))
    ref.load_state_dict(model.state_dict())
    x = torch.randn(32, 6)
    model(x).square().mean().backward()
    h = ref[0](x)
    ref[2](reference.gaaf_reference(h, "relu", "sigmoid", shift=-1.0)).square().mean().backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss0 = model(x).square().mean().item()
    for _ in range(5):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert model(x).square().mean().item() < loss0


def test_module_output_allows_inplace_ops():
    x = torch.randn(3, 4, requires_grad=True)
    y = gaaf.GAAF()(x)
    y.mul_(2.0)  # not a view of an autograd Function output, so in-place is legal
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_functional_api_validates_and_matches_module():
    x = torch.randn(10, dtype=torch.float64)
    a = gaaf.functional.gaaf(x, "elu", "sigmoid", 50.0, "round", shift=1.0, slope=2.0)
    b = gaaf.GAAF("elu", "sigmoid", 50.0, "round", shift=1.0, slope=2.0)(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown variant"):
        gaaf.functional.gaaf(x, variant="ceiling")


@pytest.mark.parametrize("bad", [torch.arange(4), torch.ones(3, dtype=torch.bool), [1.0, 2.0]])
def test_non_float_input_raises(bad):
    with pytest.raises(ValueError, match="GAAF"):
        gaaf.GAAF()(bad)
