"""compile = "auto" (gaaf.train.compile_rule): compiled from COMPILE_AUTO_MIN_STEPS training steps,
resolved during validation so config.json records true/false; --compile / --no-compile force it."""
from __future__ import annotations

import json

import pytest

from gaaf.cli import build_parser
from gaaf.errors import UserError
from gaaf.train import resolve_config
from gaaf.train.cli import config_from_args
from gaaf.train.compile_rule import COMPILE_AUTO_MIN_STEPS, resolve_compile, training_steps
from gaaf.train.config import TrainConfig


@pytest.fixture
def compiling_allowed(monkeypatch):
    monkeypatch.delenv("GAAF_NO_COMPILE", raising=False)  # tests/conftest.py sets it


def _steps_config(steps: int) -> dict:
    """A cifar10 config whose run has exactly `steps` steps: one image per step, one epoch."""
    return {"dataset": "cifar10", "limit_train": steps, "batch_size": 1, "epochs": 1, "compile": "auto"}


def test_training_steps_counts_the_last_partial_batch():
    assert training_steps({"dataset": "cifar10", "limit_train": None, "batch_size": 128, "epochs": 200}) == 200 * 391
    assert training_steps({"dataset": "mnist", "limit_train": 1000, "batch_size": 128, "epochs": 3}) == 3 * 8
    assert training_steps({"dataset": "nope", "limit_train": None, "batch_size": 128, "epochs": 3}) == 0


def test_auto_threshold(compiling_allowed):
    assert resolve_compile(_steps_config(COMPILE_AUTO_MIN_STEPS - 1)) is False
    assert resolve_compile(_steps_config(COMPILE_AUTO_MIN_STEPS)) is True


def test_explicit_values_win_and_no_compile_env_makes_auto_eager(monkeypatch):
    long_run = {**_steps_config(10 * COMPILE_AUTO_MIN_STEPS)}
    assert resolve_compile({**long_run, "compile": False}) is False
    assert resolve_compile({**_steps_config(1), "compile": True}) is True
    monkeypatch.setenv("GAAF_NO_COMPILE", "1")
    assert resolve_compile(long_run) is False
    assert resolve_compile({**long_run, "compile": True}) is True


def test_validated_config_records_the_decision(compiling_allowed):
    assert TrainConfig().compile == "auto"
    seed_run = resolve_config()  # 200 epochs of CIFAR-10: compiled
    assert seed_run.compile is True and seed_run.to_dict()["compile"] is True
    short = resolve_config(overrides={"epochs": 1, "limit_train": 1000})
    assert short.compile is False
    # a recorded decision is kept, whatever the run length says now (reproduce / resume)
    assert resolve_config({**short.to_dict(), "epochs": 200, "limit_train": None}).compile is False
    assert resolve_config(overrides={"compile": True, "epochs": 1, "limit_train": 10}).compile is True


def test_bad_value_is_one_line_error():
    with pytest.raises(UserError, match="compile must be true, false or 'auto', got 'yes'"):
        resolve_config(overrides={"compile": "yes"})
    with pytest.raises(UserError, match="compile must be true, false or 'auto', got 1"):
        resolve_config({"compile": 1})


def test_flags_force_it(compiling_allowed, tmp_path):
    parser = build_parser()
    auto = config_from_args(parser.parse_args(["train", "--epochs", "1", "--limit-train", "100"]))
    forced = config_from_args(parser.parse_args(["train", "--epochs", "1", "--limit-train", "100", "--compile"]))
    off = config_from_args(parser.parse_args(["train", "--no-compile"]))  # 200 epochs: auto would compile
    assert (auto.compile, forced.compile, off.compile) == (False, True, False)
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"compile": True}))
    from_file = config_from_args(parser.parse_args(["train", "--config", str(cfg_file), "--no-compile"]))
    assert from_file.compile is False
