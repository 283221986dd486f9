"""gaaf.models: ResNet v1/v2 ports of the Keras CIFAR example, the MLP, build_model and helpers."""
from __future__ import annotations

import functools
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaaf import GAAF
from gaaf.models import (
    MLP, ResNet, activation_sites, build_model, count_parameters, list_models, mlp, resnet_v1, resnet_v2,
)
from gaaf.models._init import TRUNCATED_NORMAL_STD, fan_in
from gaaf.models.resnet import Conv2dSame


def _x(n: int = 2, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _of_type(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


# --- parameter counts (Keras model.summary() "Trainable params") -----------------------------------

def test_parameter_counts_match_keras_example():
    assert count_parameters(resnet_v1(20)) == 273_066
    assert count_parameters(resnet_v2(56)) == 1_663_338
    assert count_parameters(build_model("resnet20_v1", 10, (3, 32, 32))) == 273_066


def test_parameter_count_without_batch_norm_drops_exactly_the_bn_affines():
    with_bn, without = resnet_v1(20), resnet_v1(20, batch_norm=False)
    bn_params = sum(2 * m.num_features for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d))
    assert _of_type(without, nn.BatchNorm2d) == 0
    assert count_parameters(without) == 273_066 - bn_params
    # 19 BN layers in ResNet20 v1: stem + 2 per block
    assert _of_type(with_bn, nn.BatchNorm2d) == 19


def test_count_parameters_counts_trainable_only():
    net = mlp(784, 10)
    assert count_parameters(net) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    net.fc.requires_grad_(False)
    assert count_parameters(net) == 784 * 512 + 512 + 512 * 512 + 512


# --- shapes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet8_v1", "resnet20_v1", "resnet11_v2", "resnet20_v2"])
def test_resnet_output_shapes(name):
    net = build_model(name, 7, (3, 32, 32))
    assert isinstance(net, ResNet)
    assert net(_x(3)).shape == (3, 7)


@pytest.mark.parametrize("in_shape, fc_in_v1", [((1, 32, 32), 64), ((3, 40, 36), 64), ((3, 64, 64), 4 * 64)])
def test_resnet_other_input_shapes_size_the_head_like_keras_flatten(in_shape, fc_in_v1):
    v1 = build_model("resnet8_v1", 5, in_shape)
    assert v1.fc.in_features == fc_in_v1
    assert v1(_x(2, *in_shape)).shape == (2, 5)
    v2 = build_model("resnet11_v2", 5, in_shape)
    assert v2.fc.in_features == fc_in_v1 * 4  # v2 ends with 256 channels, v1 with 64
    assert v2(_x(2, *in_shape)).shape == (2, 5)


def test_mlp_flattens_and_has_the_requested_layers():
    net = build_model("mlp", 10, (1, 28, 28), hidden=(64, 32), dropout=0.2)
    assert isinstance(net, MLP)
    assert net(_x(4, 1, 28, 28)).shape == (4, 10)
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [64, 32, 10]
    assert _of_type(net, nn.Dropout) == 2
    assert _of_type(build_model("mlp", 10, (1, 28, 28)), nn.Dropout) == 0
    linear = mlp(12, 3, hidden=())
    assert linear(torch.randn(5, 12)).shape == (5, 3) and activation_sites(linear) == []


# --- activation sites --------------------------------------------------------------------------

@pytest.mark.parametrize("version, depth, per_block", [(1, 8, 2), (1, 20, 2), (2, 11, 3), (2, 20, 3)])
def test_chosen_activation_at_every_site(version, depth, per_block):
    builder = resnet_v1 if version == 1 else resnet_v2
    n = (depth - 2) // (6 if version == 1 else 9)
    expected = per_block * 3 * n + 1  # v1: 6n+1; v2: 9n + 1 (stem + head − first block's missing pre-act)
    net = builder(depth, activation="gaaf_relu", shift=-1.0)
    sites = activation_sites(net)
    assert len(sites) == expected
    assert all(isinstance(m, GAAF) for _, m in sites)
    assert _of_type(net, GAAF) == expected and _of_type(net, nn.ReLU) == 0
    assert all(m.spec.shape_params["shift"] == -1.0 for _, m in sites)
    assert len({id(m) for _, m in sites}) == expected  # a fresh module per site
    # the seed's v1 stem: exactly one relu, at the stem, and GAAF everywhere else
    seed_like = builder(depth, activation="gaaf_relu", stem_activation="relu")
    relus = [name for name, m in activation_sites(seed_like) if isinstance(m, nn.ReLU)]
    assert relus == ["stem.act"]
    assert _of_type(seed_like, GAAF) == expected - 1


def test_activation_sites_are_in_forward_order():
    for net in (resnet_v1(8, activation="tanh"), resnet_v2(11, activation="tanh"), mlp(6, 2, (4, 4), "tanh")):
        called: list[nn.Module] = []
        handles = [m.register_forward_hook(lambda mod, i, o: called.append(mod)) for _, m in activation_sites(net)]
        net(torch.randn(2, 6) if isinstance(net, MLP) else _x(2))
        for h in handles:
            h.remove()
        assert [id(m) for m in called] == [id(m) for _, m in activation_sites(net)]


def test_activation_sites_names_for_v2_head_and_stem():
    names = [name for name, _ in activation_sites(resnet_v2(11))]
    assert names[0] == "stem.act" and names[-1] == "head.act"
    assert "stage1.0.act1" not in names and "stage2.0.act1" in names


def test_activation_accepts_class_and_factory_but_not_a_shared_instance():
    assert _of_type(resnet_v1(8, activation=nn.SiLU), nn.SiLU) == 7
    factory = functools.partial(GAAF, base="tanh", shape="gaussian", width=3.0)
    assert _of_type(resnet_v1(8, activation=factory, stem_activation=nn.Tanh), GAAF) == 6
    with pytest.raises(ValueError, match="instance"):
        resnet_v1(8, activation=nn.ReLU())
    shared = nn.ReLU()
    with pytest.raises(ValueError, match="same module twice"):
        resnet_v1(8, activation=lambda: shared)
    with pytest.raises(ValueError, match="unknown activation"):
        resnet_v1(8, activation="nope")


def test_activation_sites_fallback_and_compiled_model():
    plain = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh())
    assert [name for name, _ in activation_sites(plain)] == ["1", "3"]
    compiled = torch.compile(resnet_v1(8), backend="eager")
    assert len(activation_sites(compiled)) == 7


# --- errors ------------------------------------------------------------------------------------

def test_bad_depth_lists_valid_depths():
    with pytest.raises(ValueError, match=r"resnet21_v1: depth must be 6n\+2.*8, 14, 20, 26, 32, 44, 56, 110"):
        build_model("resnet21_v1", 10, (3, 32, 32))
    with pytest.raises(ValueError, match=r"resnet21_v2: depth must be 9n\+2.*11, 20, 29, 38, 56, 110, 164"):
        build_model("resnet21_v2", 10, (3, 32, 32))
    with pytest.raises(ValueError, match=r"resnet2_v1: depth must be 6n\+2"):
        resnet_v1(2)
    with pytest.raises(ValueError, match="depth must be"):
        resnet_v2(20.0)  # type: ignore[arg-type]


def test_unknown_model_name_lists_patterns():
    with pytest.raises(ValueError, match=r"unknown model 'vgg16'.*resnet\{6n\+2\}_v1, resnet\{9n\+2\}_v2, mlp"):
        build_model("vgg16", 10, (3, 32, 32))
    with pytest.raises(ValueError, match="choose v1"):
        build_model("resnet20_v3", 10, (3, 32, 32))


def test_option_mismatches_and_small_inputs_are_refused():
    with pytest.raises(ValueError, match="stem_activation applies to ResNets only"):
        build_model("mlp", 10, (1, 28, 28), stem_activation="relu")
    with pytest.raises(ValueError, match="'mlp' only"):
        build_model("resnet20_v1", 10, (3, 32, 32), hidden=(10,))
    with pytest.raises(ValueError, match="at least 29 pixels"):
        build_model("resnet20_v1", 10, (1, 28, 28))
    with pytest.raises(ValueError, match=r"in_shape must be \(C, H, W\)"):
        build_model("resnet20_v1", 10, (32, 32))
    with pytest.raises(ValueError, match="dropout must be"):
        mlp(10, 2, dropout=1.0)
    with pytest.raises(ValueError, match="num_classes must be"):
        resnet_v1(8, num_classes=0)
    with pytest.raises(ValueError, match="takes no parameters"):
        resnet_v1(8, activation="relu", shift=1.0)


def test_list_models_names_all_build():
    names = list_models()
    assert "mlp" in names and "resnet20_v1" in names and "resnet56_v2" in names
    for name in names:
        shape = (1, 28, 28) if name == "mlp" else (3, 32, 32)
        with torch.device("meta"):  # construction only: no memory, no init cost
            net = build_model(name, 10, shape)
        assert count_parameters(net) > 0
        if name != "mlp":
            depth, version = int(name[6:].split("_")[0]), int(name[-1])
            n = (depth - 2) // (6 if version == 1 else 9)
            assert len(activation_sites(net)) == (6 * n + 1 if version == 1 else 9 * n + 1)


# --- initialisation and BatchNorm settings -------------------------------------------------------

def test_conv_and_dense_kernels_are_keras_he_normal():
    torch.manual_seed(0)
    net = resnet_v1(20)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # w / sqrt(2/fan_in) pooled over all kernels: unit std, mean 0, truncated at 2/0.8796 ≈ 2.274
    z = torch.cat([m.weight.detach().flatten() / math.sqrt(2.0 / fan_in(m.weight)) for m in convs])
    assert z.numel() > 250_000
    assert abs(z.mean().item()) < 0.01
    assert z.std().item() == pytest.approx(1.0, abs=0.01)
    limit = 2.0 / TRUNCATED_NORMAL_STD
    assert z.abs().max().item() <= limit + 1e-6
    assert z.abs().max().item() > 0.97 * limit  # truncated near 2σ', not at some smaller bound
    # and the shape is the truncated normal's (Kolmogorov-Smirnov; deterministic under the seed)
    stats = pytest.importorskip("scipy.stats")
    assert stats.kstest((z[:100_000] * TRUNCATED_NORMAL_STD).numpy(), stats.truncnorm(-2, 2).cdf).pvalue > 1e-3
    # a single large layer, on its own scale
    last = net.stage3[-1].conv2.weight
    assert last.std().item() == pytest.approx(math.sqrt(2.0 / 576), rel=0.03)
    assert net.fc.weight.abs().max().item() <= 2 * math.sqrt(2.0 / 64) / TRUNCATED_NORMAL_STD + 1e-6
    assert net.fc.weight.std().item() == pytest.approx(math.sqrt(2.0 / 64), rel=0.15)
    for m in [*convs, net.fc]:
        assert m.bias is not None and torch.count_nonzero(m.bias) == 0


def test_mlp_kernels_are_glorot_uniform():
    torch.manual_seed(0)
    net = mlp(784, 10)
    w = net.features.fc1.weight
    bound = math.sqrt(6.0 / (784 + 512))
    assert w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.02)
    assert torch.count_nonzero(net.features.fc1.bias) == 0


def test_batch_norm_uses_keras_momentum_and_epsilon():
    net = resnet_v2(11)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    # behaviour: one training step moves the running mean 1% of the way to the batch mean
    bn = net.stem.bn
    x = _x(4)
    with torch.no_grad():
        batch_mean = net.stem.conv(x).mean(dim=(0, 2, 3))
        net.train()(x)
    torch.testing.assert_close(bn.running_mean, 0.01 * batch_mean, rtol=1e-4, atol=1e-6)


# --- Keras "same" padding -------------------------------------------------------------------------

@pytest.mark.parametrize("size, pads", [(32, (0, 1)), (16, (0, 1)), (7, (1, 1)), (15, (1, 1))])
def test_strided_conv_pads_like_tensorflow_same(size, pads):
    conv = Conv2dSame(2, 3, 3, stride=2)
    x = _x(1, 2, size, size)
    expected = F.conv2d(F.pad(x, (*pads, *pads)), conv.weight, conv.bias, stride=2)
    out = conv(x)
    assert out.shape[-1] == math.ceil(size / 2)
    torch.testing.assert_close(out, expected)


# --- training-time behaviour --------------------------------------------------------------------

@pytest.mark.parametrize("builder, depth", [(resnet_v1, 8), (resnet_v2, 11)])
def test_forward_backward_with_gaaf(builder, depth):
    torch.manual_seed(0)
    net = builder(depth, activation="gaaf_relu", shift=-1.0)
    x, y = _x(4), torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("builder, depth", [(resnet_v1, 8), (resnet_v2, 11)])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gaaf_relu"])
def test_channels_last_matches_contiguous(builder, depth, train, activation):
    torch.manual_seed(0)
    net = builder(depth, activation=activation).train(train)
    x = _x(4, 3, 32, 32, seed=1)
    if not train:  # non-trivial running statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        ref = net(x)
        out = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    # GAAF's sawtooth jumps by 1/K = 1e-4 where rounding moves K·x across an integer, so a
    # different conv summation order may flip a few steps; relu must agree to float rounding
    atol = 1e-5 if activation == "relu" else 2e-3
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=atol)


def test_torch_compile_traces_without_graph_breaks():
    net = resnet_v1(8).eval()
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    x = _x(2)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x))


# --- cross-check against the Keras example itself (torch backend) ---------------------------------

def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":  # conftest.py sets the torch backend: a broken setup, not a skip
        pytest.fail(f"keras runs on the {keras.backend.backend()} backend; this test needs torch", pytrace=False)
    return keras


def _keras_resnet(keras, version: int, depth: int, num_classes: int = 10, seed_v2: bool = False):
    """The example's resnet_layer / resnet_v1 / resnet_v2 layer graph; returns (model, layers in creation order).

    `seed_v2`: the seed's resnet_v2 loop instead (GAAF-keras models/resnet_v2.py): its
    ``activation = activation`` in place of the example's ``activation = 'relu'`` keeps the first block's
    None, and its head is ``Activation(activation)``. Its argument ("tanh" here) is never used."""
    L = keras.layers
    made: list = []

    def keep(layer):
        made.append(layer)
        return layer

    def resnet_layer(x, filters=16, k=3, strides=1, act="relu", bn=True, conv_first=True):
        def conv(x):  # created where it runs, so `made` is in forward order like our modules
            return keep(L.Conv2D(filters, k, strides=strides, padding="same", kernel_initializer="he_normal"))(x)

        if conv_first:
            x = conv(x)
        if bn:
            x = keep(L.BatchNormalization())(x)
        if act is not None:
            x = L.Activation(act)(x)
        return x if conv_first else conv(x)

    inputs = keras.Input((32, 32, 3))
    x = resnet_layer(inputs)
    if version == 1:
        n, filters = (depth - 2) // 6, 16
        for stack in range(3):
            for block in range(n):
                strides = 2 if stack > 0 and block == 0 else 1
                y = resnet_layer(x, filters, strides=strides)
                y = resnet_layer(y, filters, act=None)
                if strides == 2:
                    x = resnet_layer(x, filters, k=1, strides=strides, act=None, bn=False)
                x = L.Activation("relu")(L.add([x, y]))
            filters *= 2
    else:
        n, f_in = (depth - 2) // 9, 16
        act = "tanh"  # the seed's `activation` argument
        for stage in range(3):
            for block in range(n):
                act, bn, strides = act if seed_v2 else "relu", True, 1
                f_out = f_in * (4 if stage == 0 else 2)
                if block == 0 and stage == 0:
                    act, bn = None, False
                elif block == 0:
                    strides = 2
                y = resnet_layer(x, f_in, k=1, strides=strides, act=act, bn=bn, conv_first=False)
                y = resnet_layer(y, f_in, conv_first=False)
                y = resnet_layer(y, f_out, k=1, conv_first=False)
                if block == 0:
                    x = resnet_layer(x, f_out, k=1, strides=strides, act=None, bn=False)
                x = L.add([x, y])
            f_in = f_out
        x = L.Activation(act if seed_v2 else "relu")(keep(L.BatchNormalization())(x))  # Activation(None): linear
    x = L.Flatten()(L.AveragePooling2D(pool_size=8)(x))
    outputs = keep(L.Dense(num_classes, kernel_initializer="he_normal"))(x)
    return keras.Model(inputs, outputs), made


def _copy_keras_weights(keras_layers, net: nn.Module) -> None:
    ours = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    kinds = {"Conv2D": nn.Conv2d, "BatchNormalization": nn.BatchNorm2d, "Dense": nn.Linear}
    assert len(ours) == len(keras_layers)
    assert all(isinstance(m, kinds[type(k).__name__]) for k, m in zip(keras_layers, ours))
    with torch.no_grad():
        for k, m in zip(keras_layers, ours):
            w = [torch.as_tensor(np.asarray(v)) for v in k.get_weights()]
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(w[0].permute(3, 2, 0, 1))  # (kh, kw, in, out) → (out, in, kh, kw)
                m.bias.copy_(w[1])
            elif isinstance(m, nn.Linear):
                m.weight.copy_(w[0].T)
                m.bias.copy_(w[1])
            else:  # gamma, beta, moving mean, moving variance
                m.weight.copy_(w[0]); m.bias.copy_(w[1]); m.running_mean.copy_(w[2]); m.running_var.copy_(w[3])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version, depth, seed_v2", [(1, 8, False), (2, 11, False), (2, 20, True)])
def test_matches_keras_example_numerically(version, depth, seed_v2):
    keras = _keras()
    keras.utils.set_random_seed(0)
    kmodel, klayers = _keras_resnet(keras, version, depth, seed_v2=seed_v2)
    rng = np.random.default_rng(0)
    for layer in klayers:  # non-trivial BN statistics and biases (Keras starts them at 1, 0, 0, 1 and 0)
        kind, weights = type(layer).__name__, layer.get_weights()
        if kind == "BatchNormalization":
            c = weights[0].shape
            weights = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)]
        elif kind == "Conv2D":
            weights = [weights[0], rng.normal(0, 0.1, weights[1].shape)]
        layer.set_weights([np.asarray(w, dtype="float32") for w in weights])
    net = (resnet_v1(depth) if version == 1 else resnet_v2(depth, seed_v2_bug=seed_v2)).eval()
    assert count_parameters(net) == sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    _copy_keras_weights(klayers, net)
    x = rng.normal(size=(3, 32, 32, 3)).astype("float32")
    expected = np.asarray(keras.ops.convert_to_numpy(kmodel(x, training=False)))
    with torch.no_grad():
        out = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
