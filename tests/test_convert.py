"""gaaf.convert on models written the way users write them (tests/convert_models.py) and on a
third-party library's model built offline from its config: which sites are found, that every
converted activation moves its output by at most 0.5·max s/K, that the surrogate variant leaves
the network's output unchanged bit for bit, and that the gradients are GAAF's (autograd of the
paper's composition, gaaf_reference)."""
from __future__ import annotations

import copy
import inspect
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gaaf
from convert_models import (
    Branchy, FunctionalParams, InplaceCalls, Mlp, OptionalMask, ResNet, TransformerBlock,
)
from gaaf.activations import GAAF
from gaaf.activations.reference import BASES as PHI, gaaf_reference
from gaaf.models.convert_report import CALL, MODULE, UNTRACED


class RefGAAF(nn.Module):
    """GAAF as the paper's plain composition, differentiated by autograd: the gradient to match."""

    def __init__(self, base: str, **params) -> None:
        super().__init__()
        self.base, self.params = base, params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaaf_reference(x, self.base, **self.params)


def ref(base: str):
    return lambda **params: RefGAAF(base, **params)


def gaaf_modules(model: nn.Module) -> list[GAAF]:
    return [m for m in model.modules() if isinstance(m, GAAF)]


def site_moves(model: nn.Module, *inputs) -> list[float]:
    """max |GAAF(x) − φ(x)| at every GAAF module, on one forward (hooks)."""
    moves, hooks = [], []
    for m in gaaf_modules(model):
        hooks.append(m.register_forward_hook(
            lambda mod, args, out: moves.append(float((out - PHI[mod.spec.base](args[0])).abs().max()))))
    with torch.no_grad():
        model(*inputs)
    for h in hooks:
        h.remove()
    return moves


def grads(model: nn.Module, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    (model(x) * w).sum().backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


# ---------------------------------------------------------------------- a torchvision-style ResNet
def test_resnet_shared_inplace_relu_becomes_one_gaaf_per_instance():
    torch.manual_seed(0)
    model = ResNet()
    keys = list(model.state_dict())
    model, report = gaaf.convert(model, shift=-1.0)
    assert report.ok and not report.unconverted and not report.retraced
    # the stem's relu and one per block (each called twice in its forward): 5 instances
    assert [s.name for s in report.converted] == [
        "relu", "layer1.0.relu", "layer1.1.relu", "layer2.0.relu", "layer2.1.relu"]
    assert all(s.kind == MODULE and s.source == "ReLU(inplace=True)" for s in report.converted)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert all(m.spec.base == "relu" and m.spec.shape_params["shift"] == -1.0 for m in gaaf_modules(model))
    assert list(model.state_dict()) == keys  # GAAF has no parameters: the checkpoints still load
    assert "5 activations converted, 0 not converted" in str(report)
    assert "5 x ReLU(inplace=True) -> GAAF(base='relu', shape='sigmoid', shift=-1.0" in str(report)
    data = json.loads(json.dumps(report.as_dict()))
    assert [s["name"] for s in data["converted"]][:2] == ["relu", "layer1.0.relu"] and data["unconverted"] == []


def test_a_shared_instance_stays_shared():
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(4, 4), act, nn.Linear(4, 4), act)
    model, report = gaaf.convert(model)
    assert model[1] is model[3] and isinstance(model[1], GAAF)
    assert len(report.converted) == 1 and report.converted[0].aliases == ("3",)


def test_resnet_outputs_and_gradients_are_gaafs():
    torch.manual_seed(0)
    original = ResNet().double()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    w = torch.randn(4, 10, dtype=torch.float64)
    converted, _ = gaaf.convert(copy.deepcopy(original))
    reference, _ = gaaf.convert(copy.deepcopy(original), {nn.ReLU: ref("relu")})
    # each activation moves by at most 0.5·max s/K (s ≤ 1)
    moves = site_moves(converted.eval(), x)
    assert len(moves) == 9 and max(moves) <= 0.5 / 1e4 * (1 + 1e-9) and max(moves) > 0
    # the surrogate variant's forward is φ itself: the network's output is unchanged, bit for bit
    surrogate, _ = gaaf.convert(copy.deepcopy(original), variant="surrogate")
    with torch.no_grad():
        assert torch.equal(surrogate.eval()(x), original.eval()(x))
    # gradients: GAAF's (the paper's composition under autograd), and not the original's
    for m in (original, converted, reference):
        m.train()
    g, g_ref, g_orig = grads(converted, x, w), grads(reference, x, w), grads(original, x, w)
    for k in g:
        torch.testing.assert_close(g[k], g_ref[k], rtol=1e-9, atol=1e-12)
    assert max(float((g[k] - g_orig[k]).abs().max() / g_orig[k].abs().max()) for k in g) > 1e-2


# ---------------------------------------------------------------------- a transformer block, F.gelu
def test_transformer_block_functional_calls_are_rewritten():
    torch.manual_seed(0)
    block = TransformerBlock()
    keys = list(block.state_dict())
    block, report = gaaf.convert(block)
    assert report.ok
    got = {(s.name, s.kind, s.source) for s in report.converted}
    assert got == {("mlp.gelu", CALL, "F.gelu"), ("sigmoid", CALL, "Tensor.sigmoid"), ("tanh", CALL, "torch.tanh")}
    assert sorted(report.retraced) == ["", "mlp"]
    assert isinstance(block, TransformerBlock) and isinstance(block.mlp, Mlp)  # classes, state and hooks kept
    assert list(block.state_dict()) == keys
    assert {m.spec.base for m in gaaf_modules(block)} == {"gelu", "sigmoid", "tanh"}
    assert "self.gelu(" in report.retraced["mlp"]
    copy.deepcopy(block)(torch.randn(2, 3, 16))  # a copy runs its own rewritten forward


def _call_site_calls(model: nn.Module) -> list[str]:
    """Names of the converted call-site modules (mlp.gelu, sigmoid, tanh) in the order they run."""
    calls: list[str] = []
    for name in ("mlp.gelu", "sigmoid", "tanh"):
        model.get_submodule(name).register_forward_hook(lambda *_, name=name: calls.append(name))
    return calls


@pytest.mark.parametrize("copier", ["torch.save", "deepcopy"])
def test_a_converted_model_copies_whole_with_its_rewritten_forward(copier, tmp_path):
    """torch.save(model) / copy.deepcopy: the copy runs its own rewritten forward in both modes (a
    bound method would pickle as getattr(module, "forward"), and a loaded model would run the class's
    forward: its functional calls silently unconverted)."""
    torch.manual_seed(0)
    block, _ = gaaf.convert(TransformerBlock(drop=0.5))  # dropout: a graph per training mode
    if copier == "torch.save":
        torch.save(block, tmp_path / "block.pt")
        twin = torch.load(tmp_path / "block.pt", weights_only=False)
    else:
        twin = copy.deepcopy(block)
    calls, twin_calls = _call_site_calls(block), _call_site_calls(twin)
    x = torch.randn(2, 3, 16)
    for mode in (True, False):
        block.train(mode), twin.train(mode)
        torch.manual_seed(1)
        want = block(x)
        torch.manual_seed(1)
        assert torch.equal(twin(x), want)
    assert twin_calls == calls == ["mlp.gelu", "sigmoid", "tanh"] * 2
    with torch.no_grad():
        twin.gate.bias.add_(1.0)
    assert not torch.equal(twin(x), block(x))  # its own parameters, not the original's
    assert str(inspect.signature(twin.forward)) == str(inspect.signature(block.forward)) == "(x: 'torch.Tensor') -> 'torch.Tensor'"


def test_transformer_block_outputs_and_gradients_are_gaafs():
    torch.manual_seed(0)
    original = TransformerBlock().double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    w = torch.randn(2, 5, 16, dtype=torch.float64)
    converted, _ = gaaf.convert(copy.deepcopy(original))
    moves = site_moves(converted, x)
    assert len(moves) == 3 and max(moves) <= 0.5 / 1e4 * (1 + 1e-9)
    surrogate, _ = gaaf.convert(copy.deepcopy(original), variant="surrogate")
    with torch.no_grad():
        assert torch.equal(surrogate(x), original(x))
    mapping = {F.gelu: ref("gelu"), torch.tanh: ref("tanh"), torch.Tensor.sigmoid: ref("sigmoid")}
    reference, report = gaaf.convert(copy.deepcopy(original), mapping)
    assert report.ok and not report.unused_keys
    g, g_ref, g_orig = grads(converted, x, w), grads(reference, x, w), grads(original, x, w)
    for k in g:
        torch.testing.assert_close(g[k], g_ref[k], rtol=1e-9, atol=1e-12)
    assert max(float((g[k] - g_orig[k]).abs().max()) for k in g) > 1e-3


def test_a_traced_forward_keeps_the_training_mode():
    torch.manual_seed(0)
    mlp, report = gaaf.convert(Mlp(8, 32, drop=0.5), variant="surrogate")
    assert report.retraced == {"": report.retraced[""]} and "# training" in report.retraced[""]
    x = torch.randn(64, 8)
    original = Mlp(8, 32, drop=0.5)
    original.load_state_dict(mlp.state_dict())
    assert torch.equal(mlp.eval()(x), original.eval()(x))  # no dropout in eval: identical
    torch.manual_seed(1)
    a = mlp.train()(x)
    torch.manual_seed(1)
    assert torch.equal(a, original.train()(x))  # dropout in training, the same draws


def test_in_place_calls_keep_their_meaning():
    torch.manual_seed(0)
    original = InplaceCalls()
    x = torch.randn(5, 6)
    want = original(x)
    converted, report = gaaf.convert(copy.deepcopy(original), variant="surrogate")
    assert {s.source for s in report.converted} == {"Tensor.relu_", "F.elu_"}
    assert torch.equal(converted(x), want)


# ---------------------------------------------------------------------- what is not converted, and why
def test_a_forward_that_does_not_trace_is_reported_with_its_calls():
    model, report = gaaf.convert(nn.Sequential(nn.Linear(3, 3), Branchy(), nn.ReLU()))
    assert [s.name for s in report.converted] == ["2"]
    (site,) = report.unconverted
    assert site.kind == UNTRACED and site.count == 3 and site.name == "Branchy.forward" and site.aliases == ("1",)
    assert "F.relu" in site.source and "torch.tanh" in site.source and ".sigmoid" in site.source
    assert "3 functional calls in a forward that does not trace: Branchy.forward" in str(report)
    assert not report.ok and "TraceError" in report.problems()[0]


def test_a_forward_with_optional_arguments_is_not_rewritten():
    model, report = gaaf.convert(OptionalMask())
    (site,) = report.unconverted
    assert site.count == 1 and "mask=None" in site.note and "F.silu" in site.source
    assert "forward" not in vars(model)


def test_parameters_gaafs_bases_lack_are_reported_or_converted_when_mapped():
    model = nn.Sequential(nn.LeakyReLU(0.2), nn.LeakyReLU(), nn.ELU(alpha=1.0), nn.GELU(approximate="tanh"),
                          nn.Softplus(beta=2.0), nn.ReLU6(), FunctionalParams())
    _, report = gaaf.convert(copy.deepcopy(model))
    assert sorted(s.name for s in report.converted) == ["1", "2", "6.leaky_relu_1", "6.softplus"]
    notes = {s.name: s.note for s in report.unconverted}
    assert "negative_slope=0.2 cannot be carried over (GAAF's leaky_relu has negative_slope=0.01)" in notes["0"]
    assert "approximate='tanh'" in notes["3"] and "beta=2.0" in notes["4"]
    assert "gaaf has no such base" in notes["5"] and "gaaf has no such base" in notes["6.relu6"]
    assert "negative_slope=0.2" in notes["6.leaky_relu"]
    mapping = {nn.LeakyReLU: "gaaf_leaky_relu", nn.ReLU6: "gaaf_relu", F.relu6: "gaaf_relu", "6.leaky_relu": "gaaf_relu",
               nn.GELU: None, "4": None}
    converted, report = gaaf.convert(copy.deepcopy(model), mapping)
    assert report.ok and {s.name for s in report.kept} == {"3", "4"}
    first = next(s for s in report.converted if s.name == "0")
    assert first.note == "negative_slope=0.2 not carried over"
    assert isinstance(converted[5], GAAF) and converted[5].spec.base == "relu"


def test_mappings_names_single_targets_and_errors():
    torch.manual_seed(0)
    model, report = gaaf.convert(ResNet(), {"layer1.*": None, "layer9.*": "gaaf_relu"}, frequency=100.0)
    assert [s.name for s in report.kept] == ["layer1.0.relu", "layer1.1.relu"]
    assert report.unused_keys == ["'layer9.*'"] and "matched nothing: 'layer9.*'" in str(report)
    assert all(m.spec.frequency == 100.0 for m in gaaf_modules(model)) and len(gaaf_modules(model)) == 3
    # one target for every site, whatever its base
    block, report = gaaf.convert(TransformerBlock(), "gaaf_relu", shift=-1.0)
    assert report.ok and {m.spec.base for m in gaaf_modules(block)} == {"relu"}
    plain, _ = gaaf.convert(TransformerBlock(), "relu")  # a plain name takes no parameters: nn.ReLU
    assert sum(isinstance(m, nn.ReLU) for m in plain.modules()) == 3
    block = TransformerBlock()
    with pytest.raises(ValueError, match="cannot build 'gaaf_sigmoid' for sigmoid: shape 'gaussian' takes center, "
                                         "width; got unexpected shift"):
        gaaf.convert(block, shift=-1.0)
    assert not gaaf_modules(block) and "forward" not in vars(block.mlp)  # a call that raises changes nothing
    with pytest.raises(ValueError, match="mapping must be"):
        gaaf.convert(ResNet(), 3)


def test_function_attributes_and_the_transformer_encoder_fast_path():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="relu", batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        want = layer(x)  # eval + no_grad: the fused fast path, which computes relu itself
    converted, report = gaaf.convert(copy.deepcopy(layer))
    (site,) = report.converted
    assert site.name == "activation" and site.source == "F.relu" and site.kind == "attribute"
    assert converted.activation_relu_or_gelu == 0  # else the fast path would skip the GAAF module
    calls = []
    converted.activation.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        got = converted(x)
    assert calls and float((got - want).abs().max()) < 1e-3


def test_convert_is_idempotent_and_takes_a_bare_activation():
    block, _ = gaaf.convert(TransformerBlock())
    again, report = gaaf.convert(block)
    assert not report.converted and not report.retraced and len(report.already_gaaf) == 3
    root, report = gaaf.convert(nn.SiLU())
    assert isinstance(root, GAAF) and root.spec.base == "silu" and report.converted[0].name == ""


# ---------------------------------------------------------------------- a third-party model library
def test_a_transformers_bert_built_from_its_config():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    torch.manual_seed(0)
    bert = transformers.BertModel(config).eval()
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        want = bert(input_ids=ids).last_hidden_state
    surrogate, report = gaaf.convert(copy.deepcopy(bert), variant="surrogate")
    assert report.ok
    names = sorted(s.name for s in report.converted)
    assert names == ["encoder.layer.0.intermediate.intermediate_act_fn.act",
                     "encoder.layer.1.intermediate.intermediate_act_fn.act", "pooler.activation"]
    with torch.no_grad():
        assert torch.equal(surrogate(input_ids=ids).last_hidden_state, want)
    converted, _ = gaaf.convert(copy.deepcopy(bert))
    moves = site_moves(converted, ids)
    assert len(moves) == 3 and max(moves) <= 0.5 / 1e4 + 1e-6  # float32: φ(x) rounds too
