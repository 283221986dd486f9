"""Why the report pairs seeds: GAAF has no parameters, so for one seed every arm of a study starts
from the same initial weights and sees the same batches in the same order. Checked on the real
training path (`engine.train`), relu against gaaf_relu (and its round variant), with spies on the
model builder and the loader: the states at build time and every epoch's indices must be equal."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from gaaf.data.loader import DeviceLoader
from gaaf.train import engine, resolve_config


def _trace(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Record the model's state right after it is built, and each epoch's drawn indices."""
    seen: dict[str, list[Any]] = {"states": [], "orders": []}
    real_build, real_indices = engine.build_training, DeviceLoader.epoch_indices

    def build(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        run = real_build(cfg, *args, **kwargs)
        seen["states"].append({k: v.detach().clone() for k, v in run.model.state_dict().items()})
        return run

    def indices(self: DeviceLoader) -> torch.Tensor:
        order = real_indices(self)
        seen["orders"].append(order.clone())
        return order

    monkeypatch.setattr(engine, "build_training", build)
    monkeypatch.setattr(DeviceLoader, "epoch_indices", indices)
    return seen


def _run(cfg: Any, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    with monkeypatch.context() as m:
        seen = _trace(m)
        engine.train(dataclasses.replace(cfg, out=str(out)), progress=False, log=False)
    return seen


def test_one_seed_gives_every_arm_the_same_weights_and_batch_order(tmp_path: Path, fake_cifar10_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base = resolve_config(overrides={"model": "mlp", "hidden": [32, 16], "epochs": 2, "batch_size": 16, "seed": 3,
                                     "data_dir": str(fake_cifar10_dir), "download": False,
                                     "augment": ["crop", "flip"]})  # fmt: skip
    arms = {"relu": {"activation": "relu"}, "gaaf": {"activation": "gaaf_relu", "shift": -1.0},
            "round": {"activation": "gaaf_relu", "variant": "round", "shift": -1.0}}  # fmt: skip
    seen = {name: _run(resolve_config(overrides={**base.to_dict(), **change}), tmp_path / name, monkeypatch)
            for name, change in arms.items()}  # fmt: skip
    ref = seen["relu"]
    assert len(ref["states"]) == 1 and len(ref["orders"]) == 2  # one build, two epochs
    for name in ("gaaf", "round"):
        (state,) = seen[name]["states"]
        assert state.keys() == ref["states"][0].keys()
        for key, value in state.items():
            assert torch.equal(value, ref["states"][0][key]), (name, key)
        assert all(torch.equal(a, b) for a, b in zip(seen[name]["orders"], ref["orders"], strict=True)), name
    # and the check can fail: another seed gives other weights and another order
    other = _run(resolve_config(overrides={**base.to_dict(), "seed": 4}), tmp_path / "seed4", monkeypatch)
    assert not all(torch.equal(v, ref["states"][0][k]) for k, v in other["states"][0].items())
    assert not torch.equal(other["orders"][0], ref["orders"][0])
