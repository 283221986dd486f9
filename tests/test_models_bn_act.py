"""BatchNorm → GAAF fusion in the ResNets (gaaf.models.bn_act): same results as the module path (to
rounding), same state_dict, fused only where safe (not under probes' hooks, torch.compile, eval,
no_grad, autocast, relu), and a ResNet20 v1 training forward that saves no more than relu's."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaaf.activations import fused
from gaaf.models import activation_sites, bn_act
from gaaf.models.keras_bn import KerasBatchNorm2d
from gaaf.models.resnet import resnet_v1, resnet_v2
from gaaf.train.probes import ActivationProbe


@pytest.fixture(autouse=True)
def _plain_eager_fusion_on(monkeypatch):
    fused.set_eager_compile(False)
    monkeypatch.delenv("GAAF_NO_BN_FUSION", raising=False)
    bn_act.set_bn_fusion(None)
    yield
    bn_act.set_bn_fusion(None)
    fused.set_eager_compile(None)


@pytest.fixture
def fused_calls(monkeypatch):
    """The number of fused BN → act calls made so far (a list, one entry per call)."""
    calls: list = []
    real = bn_act._fused
    monkeypatch.setattr(bn_act, "_fused", lambda *a: calls.append(type(a[0]).__name__) or real(*a))
    return calls


def _batch(n=4, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=gen, dtype=dtype), torch.randint(0, 10, (n,), generator=gen)


def _step(model, x, t, fuse):
    bn_act.set_bn_fusion(fuse)
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = F.cross_entropy(out, t)
    loss.backward()
    return out.detach(), loss.detach(), {k: p.grad for k, p in model.named_parameters()}


def _assert_steps_agree(model, fused_calls, expected_calls, steps=2, tol=1e-10):
    twin = copy.deepcopy(model)
    for s in range(steps):
        x, t = _batch(seed=s)
        before = len(fused_calls)
        out_f, loss_f, g_f = _step(model, x, t, True)
        assert len(fused_calls) - before == expected_calls
        out_u, loss_u, g_u = _step(twin, x, t, False)
        assert len(fused_calls) - before == expected_calls  # the unfused twin made none
        torch.testing.assert_close(out_f, out_u, rtol=tol, atol=tol)
        torch.testing.assert_close(loss_f, loss_u, rtol=tol, atol=tol)
        for k in g_u:
            torch.testing.assert_close(g_f[k], g_u[k], rtol=tol, atol=tol, msg=k)
        with torch.no_grad():  # a plain SGD step, so the next step starts from moved weights
            for p, q in zip(model.parameters(), twin.parameters()):
                p -= 0.1 * p.grad
                q -= 0.1 * q.grad
    sd_f, sd_u = model.state_dict(), twin.state_dict()
    assert list(sd_f) == list(sd_u)
    for k in sd_u:  # running statistics (and num_batches_tracked) included
        torch.testing.assert_close(sd_f[k], sd_u[k], rtol=tol, atol=tol, msg=k)


@pytest.mark.parametrize("shortcut", ["B", "A"])
def test_resnet20_v1_fused_step_matches_the_module_path_float64(fused_calls, shortcut):
    torch.manual_seed(0)
    model = resnet_v1(20, activation="gaaf_relu", shortcut=shortcut, shift=-1.0).double()
    _assert_steps_agree(model, fused_calls, expected_calls=19)


def test_resnet_v2_and_keras2_batch_norm_fuse_every_bn_act_pair(fused_calls):
    torch.manual_seed(0)
    model = resnet_v2(11, activation="gaaf_tanh", keras2_batch_norm=True).double()
    _assert_steps_agree(model, fused_calls, expected_calls=len(activation_sites(model)))
    assert set(fused_calls) == {"KerasBatchNorm2d"}
    torch.manual_seed(0)
    seed_bug = resnet_v2(11, activation="gaaf_relu", seed_v2_bug=True).double()
    del fused_calls[:]
    # the seed's v2: 6n + 1 sites, each after a BatchNorm; the BNs followed by an Identity stay unfused
    _assert_steps_agree(seed_bug, fused_calls, expected_calls=len(activation_sites(seed_bug)), steps=1)
    assert set(fused_calls) == {"BatchNorm2d"}


def test_state_dict_keys_and_children_are_unchanged():
    model = resnet_v2(11, activation="gaaf_relu")
    names = dict(model.named_modules())
    for n in ("stem.conv", "stem.bn", "stem.act", "head.bn", "head.act"):
        assert n in names
    assert isinstance(model.stem, nn.Sequential) and isinstance(model.head, nn.Sequential)
    keys = list(model.state_dict())
    assert keys[:7] == ["stem.conv.weight", "stem.conv.bias", "stem.bn.weight", "stem.bn.bias", "stem.bn.running_mean",
                        "stem.bn.running_var", "stem.bn.num_batches_tracked"]
    assert "head.bn.running_var" in keys
    plain_stem = nn.Sequential(*[copy.deepcopy(m) for m in model.stem])  # what main built: loads the same keys
    plain_stem.load_state_dict({k.replace("conv.", "0.").replace("bn.", "1."): v
                                for k, v in model.stem.state_dict().items()})


@pytest.mark.filterwarnings("ignore:GAAF in bfloat16")
def test_no_fusion_for_relu_eval_no_grad_autocast_hooks_or_switch(fused_calls, monkeypatch):
    torch.manual_seed(0)
    x, _ = _batch(dtype=torch.float32)
    relu = resnet_v1(8, activation="relu")
    relu(x).sum().backward()
    model = resnet_v1(8, activation="gaaf_relu", shift=-1.0)
    model.eval()
    model(x)
    model.train()
    with torch.no_grad():
        model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    handle = model.stage1[0].act2.register_forward_hook(lambda *a: None)
    model(x)  # the hooked site only
    assert len(fused_calls) == 6
    handle.remove()
    handle = nn.modules.module.register_module_forward_pre_hook(lambda *a: None)
    model(x)
    handle.remove()
    assert len(fused_calls) == 6
    monkeypatch.setenv("GAAF_NO_BN_FUSION", "1")
    model(x)
    assert len(fused_calls) == 6
    bn_act.set_bn_fusion(True)  # an explicit choice wins over the environment
    model(x)
    assert len(fused_calls) == 13
    with pytest.raises(ValueError, match="True, False or None"):
        bn_act.set_bn_fusion("yes")


def test_eval_mode_is_unchanged():
    torch.manual_seed(0)
    model = resnet_v1(8, activation="gaaf_relu", shift=-1.0).double()
    x, t = _batch()
    _step(model, x, t, True)  # moves the running statistics
    model.eval()
    bn_act.set_bn_fusion(True)
    on = model(x)
    bn_act.set_bn_fusion(False)
    torch.testing.assert_close(model(x), on, rtol=0.0, atol=0.0)


def test_probes_still_record_every_site(fused_calls):
    """Sampled training calls hook every site and run unfused; the others fuse. The record equals a
    probe's on the same model with fusion off."""
    torch.manual_seed(0)
    model = resnet_v1(8, activation="gaaf_relu", shift=-1.0)
    twin = copy.deepcopy(model)
    x, t = _batch(dtype=torch.float32)
    records = []
    for net, fuse in ((model, True), (twin, False)):
        bn_act.set_bn_fusion(fuse)
        probe = ActivationProbe(net, every=2)
        for step in range(4):
            F.cross_entropy(net(x), t).backward()
            if fuse:  # sampled calls 0 and 2 run unfused
                assert len(fused_calls) == 7 * ((step + 1) // 2)
        records.append(probe.end_epoch(1))
        probe.close()
    assert len(fused_calls) == 14
    rec, expected = records
    assert rec["samples"] == 2 and len(rec["per_site"]) == 7
    for name, site in expected["per_site"].items():
        got = rec["per_site"][name]
        assert got["count"] == site["count"] > 0 and got["hist"] == site["hist"], name
        assert got["mean_abs_grad"] == pytest.approx(site["mean_abs_grad"], rel=1e-5), name


def test_torch_compile_of_the_model_falls_back(fused_calls):
    torch.manual_seed(0)
    model = resnet_v1(8, activation="gaaf_relu", shift=-1.0).double()
    twin = copy.deepcopy(model)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # bn_act adds no graph break
    x, t = _batch()
    out_c, _, g_c = _step(compiled, x, t, True)
    assert not fused_calls
    out_e, _, g_e = _step(twin, x, t, True)
    assert len(fused_calls) == 7
    torch.testing.assert_close(out_c, out_e, rtol=1e-10, atol=1e-10)
    for k in g_e:
        torch.testing.assert_close(g_c["_orig_mod." + k] if "_orig_mod." + k in g_c else g_c[k], g_e[k],
                                   rtol=1e-10, atol=1e-10)


def test_batchnorm_momentum_none_keeps_the_cumulative_average(fused_calls):
    bn = nn.BatchNorm2d(3, momentum=None).double()
    act = resnet_v1(8, activation="gaaf_tanh").stem.act.double()
    twin_bn = copy.deepcopy(bn)
    for s in range(3):
        z = torch.randn(4, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(s), requires_grad=True)
        y = bn_act.bn_act(bn, act, z)
        torch.testing.assert_close(y, act(twin_bn(z)), rtol=1e-12, atol=1e-12)
    assert len(fused_calls) == 3
    assert int(bn.num_batches_tracked) == int(twin_bn.num_batches_tracked) == 3
    torch.testing.assert_close(bn.running_mean, twin_bn.running_mean, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(bn.running_var, twin_bn.running_var, rtol=1e-12, atol=0.0)
    assert not bn_act.fusable(nn.BatchNorm2d(3, affine=False), act, z)
    assert not bn_act.fusable(nn.BatchNorm2d(3, track_running_stats=False), act, z)
    assert not bn_act.fusable(type("SubBN", (nn.BatchNorm2d,), {})(3), act, z)  # exact types only
    assert bn_act.fusable(KerasBatchNorm2d(3).double(), act, z)


def _saved_big(model, x):
    """(bytes, count) of the distinct storages at least as large as one (N, 64, 8, 8) map, over
    every tensor a training forward saves for backward."""
    seen: "dict[int, int]" = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    big = [n for n in seen.values() if n >= x.shape[0] * 64 * 8 * 8 * x.element_size()]
    return sum(big), len(big), sum(seen.values())


def test_resnet20_v1_saves_no_more_than_relu():
    """Saved for backward by one ResNet20 v1 (shortcut B) training forward, batch N, float32:
    relu keeps per site BatchNorm's input z and its output y (also the next conv's input); the fused
    GAAF path keeps z, and at a block's last site the block input x, which the block's first conv keeps
    anyway, not the projection's output (recomputed in the backward): exactly relu's activation-sized
    tensors. Fewer small ones: C floats fewer per BatchNorm (relu's BatchNorm saves weight, running mean
    and variance, batch mean and invstd; the fused op weight, bias, batch mean and invstd), and the two
    1×1 projections' weights (relu's projection convs keep them; the fused op holds the module instead).
    The unfused GAAF path keeps x = BN(z) + r at each of the 19 sites on top."""
    n = 4
    x = torch.randn(n, 3, 32, 32)

    def saved(activation, fuse, **kw):
        bn_act.set_bn_fusion(fuse)
        torch.manual_seed(0)
        return _saved_big(resnet_v1(20, activation=activation, **kw), x)

    relu, gaaf = saved("relu", True), saved("gaaf_relu", True, shift=-1.0)
    unfused = saved("gaaf_relu", False, shift=-1.0)
    assert gaaf[:2] == relu[:2]
    per_channel = 4 * (7 * 16 + 6 * 32 + 6 * 64)
    projection_weights = 4 * (32 * 16 + 64 * 32)
    assert gaaf[2] == relu[2] - per_channel - projection_weights
    site_inputs = n * 4 * (7 * 16 * 32 * 32 + 6 * 32 * 16 * 16 + 6 * 64 * 8 * 8)
    assert unfused[0] == gaaf[0] + site_inputs
    # option A: the zero-padded residual is recomputed too; relu's step keeps the outputs the next
    # stage's strided conv pads (its own padded copy is what that conv keeps): less than relu in all
    relu_a, gaaf_a = saved("relu", True, shortcut="A"), saved("gaaf_relu", True, shortcut="A", shift=-1.0)
    assert gaaf_a[2] < relu_a[2]
