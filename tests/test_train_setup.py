"""gaaf.train.setup: one setup path. Training, the benchmarks and the sweep's estimate build their model,
optimizer and train step with `build_training`; eval and config validation build the model with
`build_model_for`. Each test replaces the builder in the caller's namespace with a spy, so it fails
when a caller stops building through it or builds something else from the same config."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from gaaf.bench import probe_overhead
from gaaf.bench import train as bench
from gaaf.experiments import estimate
from gaaf.train import config, engine, resolve_config, setup
from gaaf.train.setup import Training, build_training


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str = "build_training") -> list[tuple[Any, Any]]:
    """Replace `module.<name>` (raising if the module has no such name) with a wrapper that records
    (cfg, result) of every call."""
    calls: list[tuple[Any, Any]] = []
    real = getattr(module, name)

    def spy(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(cfg, *args, **kwargs)
        calls.append((cfg, result))
        return result

    monkeypatch.setattr(module, name, spy)
    return calls


def _signature(run: Training) -> dict[str, Any]:
    """What must match between two builds of one config: the model's structure (modules, parameter
    names and shapes), the optimizer's class and every param-group setting, the wrappers and layout."""
    groups = [{k: v for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])}
              for g in run.optimizer.param_groups]
    return {
        "model": repr(run.model),
        "params": [(n, tuple(p.shape), p.requires_grad) for n, p in run.model.named_parameters()],
        "optimizer": type(run.optimizer).__name__, "groups": groups,
        "net": type(run.net).__name__, "eval_net": type(run.eval_net).__name__, "channels_last": run.channels_last,
    }


def test_the_benchmark_builds_what_training_builds(tmp_path: Path, fake_cifar10_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = bench.bench_config("resnet8_v1", "gaaf_relu", batch_size=16, amp=False, device="cpu")
    trained = _spy(monkeypatch, engine)
    benched = _spy(monkeypatch, bench)
    engine.train(dataclasses.replace(cfg, epochs=1, data_dir=str(fake_cifar10_dir), out=str(tmp_path / "run")),
                 progress=False, log=False)
    cand = bench.build_candidate(cfg, torch.device("cpu"), compile=False, channels_last=False)
    assert len(trained) == 1 and len(benched) == 1
    assert benched[0][1] is cand
    assert _signature(cand) == _signature(trained[0][1])
    assert cand.eval_batch_size == trained[0][1].eval_batch_size == 256
    # the optimizer really is the run's: Adam with the seed preset's Keras epsilon
    assert _signature(cand)["optimizer"] == "Adam" and _signature(cand)["groups"][0]["eps"] == cfg.adam_eps


def test_build_training_differs_when_the_config_does() -> None:
    """The signature above can tell two builds apart (so the test above could fail)."""
    cpu = torch.device("cpu")
    base = resolve_config(overrides={"model": "resnet8_v1", "download": False})
    a = build_training(base, cpu, (3, 32, 32), 10)
    for change in ({"optimizer": "sgd"}, {"activation": "gaaf_relu"}, {"adam_eps": 1e-8}, {"channels_last": True}):
        b = build_training(dataclasses.replace(base, **change), cpu, (3, 32, 32), 10)
        assert _signature(a) != _signature(b), change


def test_estimate_and_probe_bench_time_the_runs_step(monkeypatch: pytest.MonkeyPatch) -> None:
    estimated = _spy(monkeypatch, estimate)
    probed = _spy(monkeypatch, probe_overhead)
    run_cfg = resolve_config(overrides={"model": "mlp", "hidden": [16], "optimizer": "sgd", "batch_size": 8,
                                        "download": False}).to_dict()
    timing = estimate.measure_step_seconds(run_cfg, threads=1, steps=1)
    assert timing.seconds > 0 and timing.one_off == 0  # an mlp of relu compiles nothing
    (cfg, run), = estimated
    assert (cfg.model, cfg.hidden, cfg.optimizer, cfg.batch_size, cfg.compile) == ("mlp", [16], "sgd", 8, False)
    assert type(run.optimizer).__name__ == "SGD" and run.optimizer.param_groups[0]["momentum"] == 0.9

    res = probe_overhead.measure_probe_overhead("mlp", "relu", batch_size=8, every=2, blocks=1, in_shape=(1, 4, 4))
    assert res["probe_seconds_per_step"] > 0
    (cfg, run), = probed
    assert (cfg.model, cfg.activation, cfg.batch_size) == ("mlp", "relu", 8) and type(run.optimizer).__name__ == "Adam"


def test_eval_and_validation_build_the_model_with_build_model_for(
        tmp_path: Path, fake_cifar10_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = resolve_config(overrides={"model": "mlp", "hidden": [8], "epochs": 1, "batch_size": 10, "download": False,
                                    "data_dir": str(fake_cifar10_dir), "out": str(tmp_path / "run")})
    engine.train(cfg, progress=False, log=False)
    evaluated = _spy(monkeypatch, engine, "build_model_for")
    assert engine.evaluate_checkpoint(tmp_path / "run")["n"] == 20
    assert [c.hidden for c, _ in evaluated] == [[8]]

    devices: list[str] = []
    real = config.build_model_for

    def on_meta(cfg: Any, in_shape: Any, num_classes: int) -> torch.nn.Module:
        devices.append(torch.empty(0).device.type)  # the device models are being built on
        return real(cfg, in_shape, num_classes)

    monkeypatch.setattr(config, "build_model_for", on_meta)
    assert cfg.problems() == []
    assert devices == ["meta"]

    def broken(cfg: Any, in_shape: Any, num_classes: int) -> torch.nn.Module:
        raise ValueError("no such model here")

    monkeypatch.setattr(config, "build_model_for", broken)
    assert cfg.problems() == ["no such model here"]
    assert setup.build_model_for is real  # setup's model builder is the one validation uses
