"""gaaf.train end to end on a tiny synthetic CIFAR-10 in the real on-disk layout: the run folder,
`gaaf train` / `gaaf eval` through gaaf.cli.main, resume (also after SIGKILL, in a subprocess),
divergence, and two-process DistributedDataParallel (gloo)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from data_fakes import write_fake_cifar10
from gaaf.cli import main
from gaaf.train import TrainingDiverged, resolve_config, train

ROOT = Path(__file__).resolve().parents[1]
LOSS_ACC = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc")
HEADER = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "images_per_second"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar10(tmp_path_factory.mktemp("data"), n_train=160, n_test=40, seed=0)


def _tiny(data_dir: Path, out: Path, **kw) -> dict:
    """Overrides for a fast MLP run on the fake data (dropout + augmentation: RNG matters)."""
    base = dict(model="mlp", hidden=[16], dropout=0.1, augment=["crop", "flip"], epochs=2, batch_size=32,
                data_dir=str(data_dir), download=False, device="cpu", out=str(out), l2=0.0)
    return {**base, **kw}


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _loss_acc(run: Path) -> list[tuple]:
    return [tuple(r[c] for c in LOSS_ACC) for r in _rows(run)]


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _env() -> dict:
    # one thread per process: identical float sums in every process, and kind to a shared CPU
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


class Recorder:
    def __init__(self):
        self.calls = []

    def on_train_start(self, state):
        self.calls.append(("start", state.epoch, state.out_dir, state.device.type, type(state.model).__name__))

    def on_epoch_end(self, state, row):
        self.calls.append(("epoch", state.epoch, row["epoch"]))

    def on_train_end(self, state, summary):
        self.calls.append(("end", summary["status"]))


# ---------------------------------------------------------------------- the run folder
def test_run_folder_format_and_callbacks(data_dir, tmp_path):
    out = tmp_path / "run"
    rec = Recorder()
    summary = train(resolve_config(overrides=_tiny(data_dir, out)), callbacks=[rec], progress=False, log=False)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.csv", "summary.json"]
    assert (out / "metrics.csv").read_text().splitlines()[0] == ",".join(HEADER)
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert 0 <= float(r["train_acc"]) <= 1 and 0 <= float(r["test_acc"]) <= 1
        assert float(r["test_acc"]) * 40 == pytest.approx(round(float(r["test_acc"]) * 40))  # whole test set once
        assert float(r["images_per_second"]) > 0 and float(r["lr"]) == 1e-3
    doc = json.loads((out / "config.json").read_text())
    assert set(doc["config"]) == set(resolve_config().to_dict()) and doc["config"]["out"] == str(out)
    assert {"gaaf_version", "torch_version", "python_version", "git_revision", "hostname", "device", "created"} <= set(doc["meta"])
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["status"] == "finished" and on_disk["epochs"] == 2 and on_disk["parameters"] > 0
    assert (on_disk["train_images"], on_disk["test_images"]) == (160, 40)  # what it loaded (the fake files' sizes)
    assert on_disk["final_test_acc"] == float(rows[-1]["test_acc"])
    assert on_disk["best_test_acc"] == max(float(r["test_acc"]) for r in rows)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"]["model"] == "mlp" and len(ckpt["metrics"]) == 2
    assert rec.calls == [("start", 0, out, "cpu", "MLP"), ("epoch", 1, 1), ("epoch", 2, 2), ("end", "finished")]


def test_config_json_reproduces_the_run_and_resume_extends_it(data_dir, tmp_path, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    train(resolve_config(overrides=_tiny(data_dir, a, epochs=3)), progress=False, log=False)
    # the same config file into a new folder: the same numbers
    assert main(["train", "--config", str(a / "config.json"), "--out", str(b), "--quiet"]) == 0
    assert _loss_acc(a) == _loss_acc(b)
    assert "final test acc" in capsys.readouterr().out
    # 2 epochs, then --resume with --epochs 3: identical to 3 epochs straight
    train(resolve_config(overrides=_tiny(data_dir, c, epochs=2)), progress=False, log=False)
    assert main(["train", "--out", str(c), "--resume", "--epochs", "3", "--quiet"]) == 0
    assert _loss_acc(c) == _loss_acc(a)
    assert _same_weights(a / "last.pt", c / "last.pt")
    assert json.loads((c / "summary.json").read_text())["epochs"] == 3


def test_resnet8_through_the_cli_and_eval(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAAF_NO_COMPILE", "1")  # the fused kernels' one-off compile is not what this tests
    out = tmp_path / "r8"
    args = ["train", "--model", "resnet8_v1", "--activation", "gaaf_relu", "--shift", "-1", "--epochs", "1",
            "--batch-size", "32", "--limit-train", "64", "--data-dir", str(data_dir), "--no-download",
            "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(args) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["activation"] == "gaaf_relu" and cfg["shift"] == -1.0 and cfg["limit_train"] == 64 and cfg["l2"] == 1e-4
    assert "at epoch 1), 1 epoch in " in capsys.readouterr().out  # not "1 epochs"
    assert main(["eval", str(out / "best.pt"), "--json", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 40 and r["epoch"] == 1
    assert r["test_acc"] == pytest.approx(float(_rows(out)[0]["test_acc"]))
    assert r["test_loss"] == pytest.approx(float(_rows(out)[0]["test_loss"]), rel=1e-4)
    assert main(["eval", str(out), "--limit-test", "10"]) == 0  # a run folder means its last.pt
    line = capsys.readouterr().out
    assert line.startswith("test_loss ") and "test_acc " in line and "(10 images, epoch 1" in line


# ---------------------------------------------------------------------- bad input
def _bad(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaaf: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--model", "vgg11"], "unknown model 'vgg11'"),
    (["--model", "resnet21_v1"], "depth must be 6n+2"),
    (["--activation", "swish9"], "unknown activation 'swish9'; choose one of:"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--optimizer", "rmsprop"], "choose one of: adam, sgd"),
    (["--preset", "fast"], "unknown preset 'fast'"),
])
def test_bad_flags_are_one_line_errors(data_dir, tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    err = _bad(capsys, ["train", *flags, "--data-dir", str(data_dir), "--no-download", "--out", str(out)])
    assert message in err
    assert not out.exists()


def test_run_level_errors_overwrite_nothing(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train(resolve_config(overrides=_tiny(data_dir, run, epochs=1)), progress=False, log=False)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()}
    common = ["--model", "mlp", "--hidden", "16", "--data-dir", str(data_dir), "--no-download", "--device", "cpu"]
    assert "already holds a run; pass --resume" in _bad(capsys, ["train", *common, "--out", str(run)])
    assert "written by another config (lr: 0.001 -> 0.1)" in _bad(capsys, ["train", "--out", str(run), "--resume", "--lr", "0.1", "--epochs", "2"])
    assert "already finished epoch 1 of 1" in _bad(capsys, ["train", "--out", str(run), "--resume"])
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()} == before
    assert "no checkpoint at" in _bad(capsys, ["train", *common, "--out", str(tmp_path / "empty"), "--resume"])
    assert "--resume needs --out" in _bad(capsys, ["train", "--resume"])
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert "cannot write to --out" in _bad(capsys, ["train", *common, "--out", str(blocker / "run")])
    missing = tmp_path / "no_data"
    assert "--no-download" in _bad(capsys, ["train", "--model", "mlp", "--data-dir", str(missing), "--no-download",
                                            "--out", str(tmp_path / "nd")])
    assert not (tmp_path / "nd").exists()  # the run folder it had made is removed again
    assert "no checkpoint at" in _bad(capsys, ["eval", str(tmp_path / "nothing.pt")])


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_a_clear_error(data_dir, tmp_path, capsys):
    err = _bad(capsys, ["train", "--model", "mlp", "--data-dir", str(data_dir), "--no-download", "--tensorboard",
                        "--out", str(tmp_path / "tb")])
    assert "pip install 'gaaf[tensorboard]'" in err and not (tmp_path / "tb").exists()


class NaNFromEpoch2:
    """Turns the model's output into NaN once epoch 1 is finished."""

    def on_train_start(self, state):
        state.model.register_forward_hook(lambda m, i, o: o * float("nan") if state.epoch >= 1 else o)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"train loss is nan in epoch 2; kept the last good checkpoint \(epoch 1\)"):
        train(resolve_config(overrides=_tiny(data_dir, out, epochs=3)), callbacks=[NaNFromEpoch2()], progress=False, log=False)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in _rows(out)] == ["1"]
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
    assert all(torch.isfinite(w).all() for w in _weights(out / "last.pt").values())


# ---------------------------------------------------------------------- SIGKILL + resume, in subprocesses
DRIVER = textwrap.dedent("""
    import json, pathlib, sys, time
    from gaaf.train import resolve_config, train

    class HaltInEpoch2:  # after two steps of epoch 2: say so, then wait to be killed
        def on_train_start(self, state):
            steps = []

            def hook(m, i):
                if state.epoch >= 1 and m.training:
                    steps.append(None)
                    if len(steps) == 3:
                        pathlib.Path(sys.argv[2]).touch()
                        time.sleep(3600)

            state.model.register_forward_pre_hook(hook)

    train(resolve_config(overrides=json.loads(sys.argv[1])), callbacks=[HaltInEpoch2()], progress=False)
""")


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(data_dir, tmp_path):
    """Killed mid-epoch 2, after exactly two of its steps (the child halts there and waits: the
    kill lands at the same point however fast or loaded the machine is)."""
    killed, straight, halted = tmp_path / "killed", tmp_path / "straight", tmp_path / "halted_in_epoch2"
    opts = _tiny(data_dir, killed, epochs=3)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(opts), str(halted)], env=_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, not a speed requirement
        while not halted.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached epoch 2"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists() and len(_rows(killed)) == 1
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 1

    def gaaf(*args):
        r = subprocess.run([sys.executable, "-m", "gaaf", "train", *args, "--quiet"], env=_env(), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr

    gaaf("--out", str(killed), "--resume")
    gaaf("--config", str(killed / "config.json"), "--out", str(straight))
    assert len(_rows(straight)) == 3
    assert _loss_acc(killed) == _loss_acc(straight)
    assert _same_weights(killed / "last.pt", straight / "last.pt")
    assert _same_weights(killed / "best.pt", straight / "best.pt")


# ---------------------------------------------------------------------- DistributedDataParallel
def test_torchrun_two_cpu_processes(data_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gaaf",
           "train", "--model", "mlp", "--hidden", "16", "--epochs", "2", "--batch-size", "32", "--data-dir",
           str(data_dir), "--no-download", "--device", "cpu", "--out", str(out), "--no-augment"]
    r = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("final test acc") == 1  # rank 0 reports
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "finished"
    rows = _rows(out)
    assert len(rows) == 2
    for row in rows:  # all-reduced over both ranks' shards: 40 test images, each counted once
        assert float(row["test_acc"]) * 40 == pytest.approx(round(float(row["test_acc"]) * 40))
    assert json.loads((out / "config.json").read_text())["meta"]["world_size"] == 2
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    assert len(torch.load(out / "last.pt", weights_only=True)["rng"]) == 2  # both ranks' RNG states


def test_progress_bar_on_a_terminal_and_lines_otherwise(data_dir, tmp_path, capsys, monkeypatch):
    import gaaf.train.runfolder as runfolder

    train(resolve_config(overrides=_tiny(data_dir, tmp_path / "lines", epochs=1)), progress=True)
    err = capsys.readouterr().err
    assert err.startswith("epoch 1/1  lr 1.00e-03  train loss ") and err.count("\n") == 1 and "img/s" in err
    monkeypatch.setattr(runfolder, "is_tty", lambda stream: True)
    train(resolve_config(overrides=_tiny(data_dir, tmp_path / "bar", epochs=1, batch_size=4)), progress=True)
    err = capsys.readouterr().err
    assert "/40 [" in err and "img_s=" in err  # tqdm bar with loss/acc/img/s postfix, then the epoch line
    train(resolve_config(overrides=_tiny(data_dir, tmp_path / "quiet", epochs=1)), progress=True, log=False)
    assert capsys.readouterr().err == ""
