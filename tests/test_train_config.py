"""gaaf.train: config resolution and validation, the lr schedule, the train step, checkpoints' RNG.

No data set and no run folder here: small tensors and tiny nn.Sequential models only."""
from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from gaaf.errors import UserError
from gaaf.train import (
    PRESETS, TrainConfig, build_optimizer, config_problems, conv_kernels, evaluate, load_config_file, lr_at,
    make_train_step, new_accumulator, resolve_config,
)
from gaaf.train.checkpoint import config_differences, rng_state, set_rng_state


# ---------------------------------------------------------------------- resolution
def test_defaults_are_the_seed_preset():
    cfg = TrainConfig()
    for k, v in PRESETS["seed"].items():
        assert getattr(cfg, k) == v, k
    # validation resolves compile "auto" (here eager: tests/conftest.py sets GAAF_NO_COMPILE=1)
    assert cfg.compile == "auto" and resolve_config() == dataclasses.replace(cfg, compile=False)
    assert cfg.validate() is cfg


def test_field_names_cover_every_field_and_round_trip():
    names = TrainConfig.field_names()
    assert names[:2] == ["model", "activation"] and "out" in names and "probe" in names
    cfg = resolve_config(overrides={"activation": "gaaf_relu", "shift": -1.0, "augment": ["shift", "flip"]})
    assert resolve_config(cfg.to_dict()) == cfg
    assert resolve_config({"config": cfg.to_dict(), "meta": {"torch_version": "x"}}) == cfg


def test_resolution_order_defaults_preset_file_flags():
    cfg = resolve_config({"preset": "he2016", "lr": 0.05, "epochs": 7}, {"epochs": 3, "seed": None})
    assert cfg.optimizer == "sgd" and cfg.momentum == 0.9 and cfg.weight_decay == 1e-4  # preset
    assert cfg.augment == ["crop", "flip"] and cfg.normalize == "pixel_mean" and cfg.shortcut == "A"
    assert cfg.lr == 0.05          # file beats preset
    assert cfg.epochs == 3         # flag beats file
    assert cfg.seed == 0           # a None override means "flag not given"
    assert cfg.lr_schedule == [[32000, 0.1], [48000, 0.01]] and cfg.lr_schedule_unit == "iteration"
    # a flag's preset applies below the file too
    assert resolve_config({"lr": 0.5}, {"preset": "he2016"}).lr == 0.5


def test_unknown_keys_list_the_allowed_ones():
    with pytest.raises(UserError, match=r"unknown config key\(s\) in config file: colour, lrr; allowed: model, activation"):
        resolve_config({"lrr": 1, "colour": "red"})
    with pytest.raises(UserError, match="unknown preset 'fast'; choose one of: he2016, seed"):
        resolve_config(overrides={"preset": "fast"})


def test_validate_reports_all_problems_at_once():
    cfg = dataclasses.replace(TrainConfig(), epochs=0, batch_size=0, lr=-1.0, optimizer="rmsprop",
                              device="tpu", limit_train=0, lr_schedule=[[10, 0.1], [5, 0.1]])
    probs = cfg.problems()
    text = "; ".join(probs)
    for part in ("epochs must be >= 1", "batch_size must be >= 1", "lr must be a finite number > 0",
                 "unknown optimizer 'rmsprop'; choose one of: adam, sgd", "unknown device 'tpu'",
                 "limit_train must be >= 1", "lr_schedule epochs must be increasing"):
        assert part in text
    with pytest.raises(UserError) as e:
        cfg.validate()
    assert "\n" not in str(e.value) and str(e.value).startswith("invalid training config: ")


@pytest.mark.parametrize("override, message", [
    ({"model": "resnet21_v1"}, "depth must be 6n+2"),
    ({"model": "vgg16"}, "unknown model 'vgg16'"),
    ({"activation": "swishy"}, "unknown activation 'swishy'; choose one of:"),
    ({"activation": "relu", "shift": 1.0}, "activation 'relu' takes no parameters, got shift (did you mean 'gaaf_relu'?)"),
    ({"activation": "gaaf_tanh", "width": -1.0}, "width must be"),
    ({"activation": "gaaf_relu", "variant": "ceil"}, "unknown variant 'ceil'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; choose one of: cifar10"),
    ({"augment": ["rotate"]}, "unknown augmentation 'rotate'"),
    ({"normalize": "zca"}, "unknown normalize 'zca'"),
    ({"model": "resnet20_v1", "hidden": [64]}, "'mlp' only"),
    ({"dropout": 1.5}, "dropout must be in [0, 1)"),
    ({"adam_betas": [0.9]}, "adam_betas must be two numbers"),
    ({"epochs": "ten"}, "epochs must be an integer, got 'ten'"),
    ({"batch_norm": "yes"}, "batch_norm must be true or false"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"probe_every": 0}, "probe_every must be >= 1"),
    ({"probe_every": -3}, "probe_every must be >= 1"),
])
def test_bad_values_name_the_problem(override, message):
    with pytest.raises(UserError, match="invalid training config") as e:
        resolve_config(overrides=override)
    assert message in str(e.value)
    assert any(message in p for p in config_problems(override))


def test_config_problems_is_empty_for_good_configs_and_lists_unknown_keys():
    assert config_problems({"model": "mlp", "hidden": [32], "epochs": 2}) == []
    assert config_problems({"config": {"activation": "gaaf_relu", "shift": -1}}) == []
    assert "unknown key 'bogus'" in config_problems({"bogus": 1})


def test_coercion_from_json_and_toml_types():
    cfg = resolve_config({"epochs": 3.0, "lr": 1, "augment": "crop, flip", "hidden": [32.0], "model": "mlp"})
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.augment == ["crop", "flip"] and cfg.hidden == [32]


def test_act_params_only_the_set_ones():
    cfg = resolve_config(overrides={"activation": "gaaf_relu", "shift": -1.0, "variant": "round"})
    assert cfg.act_params() == {"shape": "sigmoid", "shift": -1.0, "slope": 1.0, "frequency": 10000.0, "variant": "round"}
    assert resolve_config(overrides={"activation": "relu"}).act_params() == {}  # a plain activation: none apply
    assert TrainConfig().act_params() == {}


def test_config_files_json_toml_and_run_folders(tmp_path):
    (tmp_path / "a.toml").write_text('model = "mlp"\nhidden = [16, 8]\nepochs = 4\naugment = []\n')
    assert load_config_file(tmp_path / "a.toml") == {"model": "mlp", "hidden": [16, 8], "epochs": 4, "augment": []}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"epochs": 9}, "meta": {"created": "now"}}))
    # a run's config.json gets the fields it predates as it ran with them (keras2_batch_norm, seed_v2_bug off,
    # the moving BatchNorm statistics at evaluation, shortcut B, an epoch schedule, ...)
    legacy = {"epochs": 9, "keras2_batch_norm": False, "seed_v2_bug": False, "precise_bn": 0, "shortcut": "B",
              "lr_schedule_unit": "epoch", "warmup_iterations": 0, "max_iterations": 0, "clip_grad_norm": 0.0}
    assert load_config_file(run / "config.json") == legacy
    assert load_config_file(run) == legacy
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot parse config file"):
        load_config_file(tmp_path / "bad.json")
    with pytest.raises(UserError, match="not found"):
        load_config_file(tmp_path / "missing.toml")


# ---------------------------------------------------------------------- lr schedule
def _keras_lr_schedule(epoch: int) -> float:
    """The seed's Keras schedule, verbatim (epoch counted from 0)."""
    lr = 1e-3
    if epoch > 180:
        lr *= 0.5e-3
    elif epoch > 160:
        lr *= 1e-3
    elif epoch > 120:
        lr *= 1e-2
    elif epoch > 80:
        lr *= 1e-1
    return lr


def test_seed_schedule_matches_keras_exactly_including_the_off_by_one():
    cfg = TrainConfig()
    for keras_epoch in range(200):
        assert lr_at(cfg, keras_epoch + 1) == pytest.approx(_keras_lr_schedule(keras_epoch), rel=1e-12)
    assert lr_at(cfg, 81) == 1e-3 and lr_at(cfg, 82) == pytest.approx(1e-4)  # 81 epochs at the full rate


def test_an_epoch_schedule_divides_by_ten_after_epochs_100_and_150():
    # the he2016 preset counts iterations (tests/test_train_schedule.py); an epoch schedule still works
    cfg = resolve_config(overrides={"preset": "he2016", "lr_schedule": "100:0.1,150:0.01", "lr_schedule_unit": "epoch"})
    assert [lr_at(cfg, e) for e in (1, 100, 101, 150, 151, 200)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


# ---------------------------------------------------------------------- train step / evaluate
def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))


def test_conv_kernels_are_the_conv_weights_only():
    net = _tiny_net()
    assert [tuple(w.shape) for w in conv_kernels(net)] == [(4, 3, 3, 3)]


def test_train_step_matches_a_plain_reference_with_l2():
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 5
    cfg = resolve_config(overrides={"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "l2": 0.01,
                                    "weight_decay": 0.0, "preset": "he2016"})
    net, ref = _tiny_net(), _tiny_net()
    opt, ref_opt = build_optimizer(net, cfg), torch.optim.SGD(ref.parameters(), lr=0.1)
    step, acc = make_train_step(net, opt, cfg), new_accumulator("cpu")
    step(x, y, acc)
    logits = ref(x)
    loss = nn.functional.cross_entropy(logits, y)
    (loss + 0.01 * ref[0].weight.pow(2).sum()).backward()
    ref_opt.step()
    for a, b in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    correct = (logits.argmax(1) == y).sum().item()
    assert acc.tolist() == pytest.approx([loss.item() * 8, correct, 8])
    step(x, y, acc)  # accumulates
    assert acc[2].item() == 16


@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_train_step_clips_the_global_gradient_norm_like_a_hand_computation(clip):
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(8) % 5
    cfg = resolve_config(overrides={"preset": "he2016", "momentum": 0.0, "weight_decay": 0.0, "clip_grad_norm": clip})
    net, ref = _tiny_net(), _tiny_net()
    make_train_step(net, build_optimizer(net, cfg), cfg)(x, y, new_accumulator("cpu"))
    nn.functional.cross_entropy(ref(x), y).backward()
    grads = [p.grad for p in ref.parameters()]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    scale = min(1.0, clip / (norm.item() + 1e-6))
    assert (scale < 1.0) == (clip == 0.05)  # the small threshold clips, the large one does not
    with torch.no_grad():
        for p, g in zip(ref.parameters(), grads):
            p -= 0.1 * (g * scale)
    for a, b in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


class _WithUnusedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.net, self.unused = _tiny_net(), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.net(x)


def test_l2_gradient_reaches_a_kernel_the_forward_does_not_use():
    # as a loss term, l2·Σw² gives an unused kernel the grad 2·l2·w; adding it after backward must too
    cfg = resolve_config(overrides={"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "l2": 0.01,
                                    "weight_decay": 0.0, "preset": "he2016"})
    model = _WithUnusedConv()
    before = model.unused.weight.detach().clone()
    make_train_step(model, build_optimizer(model, cfg), cfg)(torch.randn(4, 3, 6, 6), torch.arange(4),
                                                              new_accumulator("cpu"))
    torch.testing.assert_close(model.unused.weight.detach(), before - 0.1 * (2 * 0.01 * before))


def test_optimizer_keeps_its_implementation_when_loading_a_checkpoint_from_elsewhere():
    # a checkpoint saved with fused=True (CUDA) loads on a CPU optimizer without turning fusion on
    net = _tiny_net()
    opt = build_optimizer(net, TrainConfig())
    assert not opt.param_groups[0].get("fused")  # CPU parameters: the default implementation
    state = opt.state_dict()
    for group in state["param_groups"]:
        group["fused"], group["foreach"] = True, False
    opt.load_state_dict(state)
    assert not opt.param_groups[0].get("fused") and opt.param_groups[0].get("foreach") is None


def test_adam_uses_keras_epsilon_and_betas():
    opt = build_optimizer(_tiny_net(), TrainConfig())
    assert opt.defaults["eps"] == 1e-7 and opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["lr"] == 1e-3


def test_evaluate_sums_and_restores_the_mode():
    net = _tiny_net()
    x, y = torch.randn(10, 3, 6, 6), torch.arange(10) % 5
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    for mode in (True, False):
        net.train(mode)
        sums = evaluate(net, batches)
        assert net.training is mode
    net.eval()
    with torch.no_grad():
        logits = net(x)
    expect = [nn.functional.cross_entropy(logits, y, reduction="sum").item(), (logits.argmax(1) == y).sum().item(), 10]
    assert sums.tolist() == pytest.approx(expect, rel=1e-5)


def test_amp_step_runs_in_bf16_on_cpu():
    cfg = resolve_config(overrides={"amp": True})
    net = _tiny_net()
    acc = new_accumulator("cpu")
    make_train_step(net, build_optimizer(net, cfg), cfg, channels_last=True)(torch.randn(4, 3, 6, 6), torch.arange(4), acc)
    assert torch.isfinite(acc).all() and acc[2].item() == 4


# ---------------------------------------------------------------------- checkpoint pieces
def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    gen = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(2), torch.manual_seed(4)
    state = rng_state(gen)
    torch.save(state, tmp_path / "s.pt")
    expect = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True), gen)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item()) == expect


def test_config_differences_ignore_where_and_how_long():
    cfg = TrainConfig()
    saved = dataclasses.replace(cfg, epochs=5, out="a", device="cpu", data_dir="/d").to_dict()
    assert config_differences(saved, cfg) == []
    assert config_differences(dataclasses.replace(cfg, probe=True, probe_every=7).to_dict(), cfg) == []
    old_run = {k: v for k, v in cfg.to_dict().items() if k != "probe_every"}  # written before the field existed
    assert config_differences(old_run, dataclasses.replace(cfg, probe_every=5)) == []
    assert config_differences(dataclasses.replace(cfg, lr=0.5).to_dict(), cfg) == ["lr: 0.5 -> 0.001"]


# ---------------------------------------------------------------------- probe options
def test_probe_every_flag_reaches_the_config_and_zero_is_refused():
    import argparse

    from gaaf.train.cli import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert TrainConfig().probe_every == 50
    args = parser.parse_args(["train", "--model", "mlp", "--probe", "--probe-every", "7"])
    cfg = config_from_args(args)
    assert cfg.probe and cfg.probe_every == 7
    assert config_from_args(parser.parse_args(["train"])).probe_every == 50
    with pytest.raises(UserError, match="probe_every must be >= 1"):
        config_from_args(parser.parse_args(["train", "--probe-every", "0"]))
