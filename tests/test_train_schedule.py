"""gaaf.train.schedule: lr_schedule in epochs or iterations, max_iterations, the he2016 preset as He et al.
2016 wrote it (sec. 4.2), and how the engine, checkpoints, resume and the sweep treat a run that
max_iterations cuts short mid-epoch."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import gaaf.train.engine as engine
from data_fakes import write_fake_cifar10
from gaaf.cli import main
from gaaf.experiments import folders
from gaaf.experiments.estimate import steps_per_run
from gaaf.train import TrainConfig, config_problems, lr_at, resolve_config, train
from gaaf.train.config import LEGACY_DEFAULTS, resolved_dict
from gaaf.train.schedule import epoch_lrs, finished, lr_factor, steps_in_epoch, warmup_factor

STEPS = 5  # 160 fake images at batch 32


# ---------------------------------------------------------------------- the schedule itself
def test_he2016_is_he_et_al_s_cifar10_recipe():
    cfg = resolve_config(overrides={"preset": "he2016"})
    expected = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, l2=0.0, batch_size=128,
                    lr_schedule=[[32000.0, 0.1], [48000.0, 0.01]], lr_schedule_unit="iteration", max_iterations=64000,
                    epochs=164, augment=["crop", "flip"], normalize="pixel_mean", shortcut="A", batch_norm=True)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_he2016_lr_divides_by_ten_at_32k_and_48k_iterations_exactly():
    cfg = resolve_config(overrides={"preset": "he2016"})
    its = [1, 32000, 32001, 48000, 48001, 64000]
    assert [lr_at(cfg, 1, it) for it in its] == [0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1, 0.1 * 0.01, 0.1 * 0.01]
    with pytest.raises(ValueError, match="counts iterations: pass the iteration"):
        lr_at(cfg, 1)


def test_he2016_on_50k_images_stops_at_64k_iterations_in_epoch_164():
    cfg = resolve_config(overrides={"preset": "he2016"})
    per_epoch = -(-50_000 // 128)  # 391 steps, the last of 80 images
    done, epoch, lrs = 0, 0, []
    while not finished(cfg, epoch, done):
        epoch += 1
        steps = steps_in_epoch(cfg, done, per_epoch)
        lrs += epoch_lrs(cfg, epoch, done, steps)
        done += steps
    assert (epoch, done, len(lrs)) == (164, 64000, 64000)
    assert steps_in_epoch(cfg, 163 * per_epoch, per_epoch) == 267 and steps_in_epoch(cfg, 64000, per_epoch) == 0
    assert lrs.count(0.1) == 32000 and lrs.count(0.1 * 0.1) == 16000 and lrs.count(0.1 * 0.01) == 16000
    assert lrs[31999] == 0.1 and lrs[32000] == 0.1 * 0.1  # iteration 32000 at 0.1, 32001 at 0.01


def test_epoch_unit_gives_every_step_of_an_epoch_the_epoch_s_rate():
    cfg = TrainConfig()  # the seed's epoch schedule: epoch 81 at 1e-3, 82 at 1e-4
    assert epoch_lrs(cfg, 81, 80 * 391, 391) == [1e-3] * 391
    assert epoch_lrs(cfg, 82, 81 * 391, 3) == [lr_at(cfg, 82)] * 3 == [1e-3 * 0.1] * 3
    assert steps_in_epoch(cfg, 10**9, 391) == 391  # max_iterations 0: no limit, epochs alone decide


def test_linear_warm_up_values_exactly():
    assert [warmup_factor(4, i) for i in (1, 2, 3, 4, 5, 10**6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 1) == 1.0
    cfg = resolve_config(overrides={"preset": "he2016", "warmup_iterations": 400})
    assert [lr_at(cfg, 1, i) for i in (1, 200, 399, 400, 401, 32001)] == [
        0.1 * (1 / 400), 0.1 * 0.5, 0.1 * (399 / 400), 0.1, 0.1, 0.1 * 0.1]
    # an epoch schedule warms up per iteration too: epoch 1 of the seed's recipe at 1e-3·i/10
    seed = resolve_config(overrides={"warmup_iterations": 10})
    assert epoch_lrs(seed, 1, 0, 12) == [1e-3 * (i / 10) for i in range(1, 10)] + [1e-3] * 3
    with pytest.raises(ValueError, match="counts iterations: pass the iteration"):
        lr_at(seed, 1)


def test_a_constant_warm_up_is_a_first_step_below_one():
    schedule = [[0, 0.1], [400, 1.0], [32000, 0.1]]
    assert [lr_factor(schedule, t) for t in (1, 400, 401, 32000, 32001)] == [0.1, 0.1, 1.0, 1.0, 0.1]
    assert lr_factor([], 5) == 1.0


# ---------------------------------------------------------------------- the one validator
@pytest.mark.parametrize("override, message", [
    ({"lr_schedule_unit": "step"}, "unknown lr_schedule_unit 'step'; choose one of: epoch, iteration"),
    ({"max_iterations": -1}, "max_iterations must be >= 0 (0: no limit, the epochs decide), got -1"),
    ({"max_iterations": 1.5}, "max_iterations must be an integer, got 1.5"),
    ({"warmup_iterations": -1}, "warmup_iterations must be >= 0 (0: no warm-up), got -1"),
    ({"clip_grad_norm": -1}, "clip_grad_norm must be a finite number >= 0, got -1"),
    ({"shortcut": "C"}, "unknown shortcut 'C'; choose A"),
    ({"shortcut": "A", "model": "resnet20_v2"}, "shortcut 'A' applies to resnet*_v1 only"),
    ({"shortcut": "A", "model": "mlp"}, "'mlp' has no shortcuts"),
])
def test_bad_schedule_and_shortcut_values_are_refused(override, message):
    problems = config_problems(override)
    assert any(message in p for p in problems), problems


def test_flags_reach_the_config(tmp_path):
    from gaaf.cli import build_parser
    from gaaf.train.cli import config_from_args
    args = build_parser().parse_args(["train", "--shortcut", "A", "--lr-schedule-unit", "iteration",
                                      "--max-iterations", "123", "--lr-schedule", "0:0.1,400:1", "--warmup-iterations", "7",
                                      "--clip-grad-norm", "2.5"])
    cfg = config_from_args(args)
    assert (cfg.shortcut, cfg.lr_schedule_unit, cfg.max_iterations, cfg.warmup_iterations) == ("A", "iteration", 123, 7)
    assert cfg.clip_grad_norm == 2.5
    assert cfg.lr_schedule == [[0.0, 0.1], [400.0, 1.0]]


def test_a_config_written_before_these_fields_reads_as_what_it_ran():
    old = {k: v for k, v in TrainConfig(preset="he2016", shortcut="A").to_dict().items()
           if k not in LEGACY_DEFAULTS}
    assert {k: resolved_dict(old)[k] for k in LEGACY_DEFAULTS} == {
        "keras2_batch_norm": False, "seed_v2_bug": False, "precise_bn": 0, "shortcut": "B",
        "lr_schedule_unit": "epoch", "warmup_iterations": 0, "max_iterations": 0, "clip_grad_norm": 0.0}
    cfg = resolve_config({"config": old, "meta": {}})
    assert (cfg.shortcut, cfg.lr_schedule_unit, cfg.warmup_iterations, cfg.max_iterations) == ("B", "epoch", 0, 0)


# ---------------------------------------------------------------------- the engine, checkpoints, resume
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar10(tmp_path_factory.mktemp("data"), n_train=160, n_test=40, seed=0)


def _flags(data_dir: Path, out: Path, epochs: int, max_iterations: int | None = 12) -> list[str]:
    """SGD 0.1 ×0.5 after iteration 3, ×0.1 after 11; 5 steps per epoch, so max_iterations 12 cuts epoch 3 at 2."""
    limit = [] if max_iterations is None else ["--max-iterations", str(max_iterations)]
    return ["--model", "mlp", "--hidden", "16", "--dropout", "0.1", "--augment", "crop,flip", "--epochs", str(epochs),
            "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.1", "--l2", "0", "--lr-schedule", "3:0.5,11:0.1",
            "--lr-schedule-unit", "iteration", *limit, "--data-dir", str(data_dir), "--no-download", "--device", "cpu",
            "--quiet", "--out", str(out)]


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.fixture
def step_lrs(monkeypatch) -> list[float]:
    """The optimizer's learning rate at every train step the engine takes."""
    seen: list[float] = []
    build = engine.build_training

    def spying(*args, **kwargs):
        run = build(*args, **kwargs)
        step = run.step

        def recorded(x, y, acc):
            seen.append(run.optimizer.param_groups[0]["lr"])
            step(x, y, acc)

        run.step = recorded
        return run

    monkeypatch.setattr(engine, "build_training", spying)
    return seen


def test_every_step_runs_at_its_iteration_s_rate_and_max_iterations_cuts_the_last_epoch(data_dir, tmp_path, capsys,
                                                                                        step_lrs):
    run = tmp_path / "run"
    rc, _ = _run(capsys, ["train", *_flags(data_dir, run, 5)])
    assert rc == 0
    assert step_lrs == [0.1] * 3 + [0.1 * 0.5] * 8 + [0.1 * 0.1]  # iterations 1-3, 4-11, 12
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # epoch 3 cut at 2 of its 5 steps; 4 and 5 never start
    assert [float(r["lr"]) for r in rows] == [0.1 * 0.5, 0.1 * 0.5, 0.1 * 0.1]  # each epoch's last step
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 12 and summary["epochs"] == 3
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["iterations"] == 12 and ckpt["scheduler"]["lr_schedule_unit"] == "iteration"
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["lr_schedule_unit"], config["max_iterations"], config["shortcut"]) == ("iteration", 12, "B")
    assert folders.reached_max_iterations(run, config) and not folders.reached_max_iterations(run, {**config, "max_iterations": 13})

    # finished by max_iterations: auto says so, plain --resume and another max_iterations refuse
    rc, err = _run(capsys, ["train", "--out", str(run), "--resume", "auto"])
    assert rc == 0 and err == f"{run} already finished 12 of 12 iterations; nothing to train\n"
    rc, err = _run(capsys, ["train", "--out", str(run), "--resume"])
    assert rc == 2 and "already took its 12 iterations (max_iterations) in epoch 3" in err
    rc, err = _run(capsys, ["train", "--out", str(run), "--resume", "--max-iterations", "20"])
    assert rc == 2 and "max_iterations: 12 -> 20" in err


def test_warm_up_and_schedule_multiply_step_by_step_and_survive_a_resume(data_dir, tmp_path, capsys, step_lrs):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _run(capsys, ["train", *_flags(data_dir, straight, 3), "--warmup-iterations", "4"])[0] == 0
    expected = [0.1 * 0.25, 0.1 * 0.5, 0.1 * 0.75, 0.1 * 0.5] + [0.1 * 0.5] * 7 + [0.1 * 0.1]
    assert step_lrs == expected
    step_lrs.clear()
    assert _run(capsys, ["train", *_flags(data_dir, resumed, 1), "--warmup-iterations", "4"])[0] == 0
    assert _run(capsys, ["train", *_flags(data_dir, resumed, 3), "--warmup-iterations", "4", "--resume"])[0] == 0
    assert step_lrs == expected
    assert [r["train_loss"] for r in _rows(resumed)] == [r["train_loss"] for r in _rows(straight)]


def test_resume_mid_schedule_ends_as_an_uninterrupted_run(data_dir, tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _run(capsys, ["train", *_flags(data_dir, straight, 5)])[0] == 0
    assert _run(capsys, ["train", *_flags(data_dir, resumed, 1)])[0] == 0  # epoch 1: iterations 1-5
    assert torch.load(resumed / "last.pt", weights_only=True)["iterations"] == 5
    assert _run(capsys, ["train", *_flags(data_dir, resumed, 5), "--resume"])[0] == 0
    assert _rows(resumed) == [{**r, "epoch_seconds": s["epoch_seconds"], "images_per_second": s["images_per_second"]}
                              for r, s in zip(_rows(straight), _rows(resumed))]
    a, b = (torch.load(p / "last.pt", weights_only=True)["model"] for p in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_without_iterations_counts_whole_epochs(data_dir, tmp_path, capsys, monkeypatch):
    run = tmp_path / "old"
    assert _run(capsys, ["train", *_flags(data_dir, run, 1, max_iterations=None)])[0] == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    del ckpt["iterations"]  # as written before iterations were saved
    torch.save(ckpt, run / "last.pt")
    seen: list[int] = []

    def spy(cfg, epoch, done, steps):
        seen.append(done)
        return epoch_lrs(cfg, epoch, done, steps)

    monkeypatch.setattr(engine.schedule, "epoch_lrs", spy)
    assert _run(capsys, ["train", *_flags(data_dir, run, 2, max_iterations=None), "--resume"])[0] == 0
    assert seen == [STEPS]  # epoch 2 starts after the 5 steps of epoch 1


def test_the_sweep_estimate_counts_at_most_max_iterations():
    config = {"dataset": "cifar10", "batch_size": 128, "max_iterations": 64000}
    assert steps_per_run(config, 164) == 64000 + 164 * 79 / 3.0  # 10,000 test images: 79 batches
    assert steps_per_run({**config, "max_iterations": 0}, 2) == 2 * 391 + 2 * 79 / 3.0
