"""Resuming runs: `--resume auto`, elastic restarts under `torchrun --max-restarts` (a rank SIGKILLed
mid-epoch), the run folder brought back in line with last.pt, and damaged files (truncated or foreign
checkpoints, a damaged config.json) reported in one line that says what to do."""
from __future__ import annotations

import csv
import json
import os
import shutil
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
from gaaf.errors import UserError
from gaaf.train import resolve_config, train
from gaaf.train import resume as RS
from gaaf.train import runfolder as R

ROOT = Path(__file__).resolve().parents[1]
LOSS_ACC = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar10(tmp_path_factory.mktemp("data"), n_train=160, n_test=40, seed=0)


def _flags(data_dir: Path, out: Path, epochs: int) -> list[str]:
    """A fast MLP run on the fake data; dropout + augmentation, so every RNG matters on resume."""
    return ["--model", "mlp", "--hidden", "16", "--dropout", "0.1", "--augment", "crop,flip", "--epochs", str(epochs),
            "--batch-size", "32", "--l2", "0", "--data-dir", str(data_dir), "--no-download", "--device", "cpu",
            "--out", str(out)]


def _tiny_cfg(data_dir: Path, out: Path, epochs: int):
    return resolve_config(overrides=dict(model="mlp", hidden=[16], dropout=0.1, augment=["crop", "flip"], epochs=epochs,
                                         batch_size=32, l2=0.0, data_dir=str(data_dir), download=False, device="cpu",
                                         out=str(out)))


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _loss_acc(run: Path) -> list[tuple]:
    return [tuple(r[c] for c in LOSS_ACC) for r in _rows(run)]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(p, weights_only=True)["model"] for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _files(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _bad(capsys, argv: list[str]) -> str:
    rc, err = _run(capsys, argv)
    assert rc == 2 and err.startswith("gaaf: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory) -> Path:
    """A finished 2-epoch run to copy and damage (read-only here: tests work on copies)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    train(_tiny_cfg(data_dir, out, 2), progress=False, log=False)
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "copy"))


# ---------------------------------------------------------------------- --resume auto
def test_resume_auto_starts_resumes_extends_and_says_when_finished(data_dir, tmp_path, capsys):
    run, straight = tmp_path / "run", tmp_path / "straight"
    rc, err = _run(capsys, ["train", *_flags(data_dir, run, 1), "--resume", "auto"])  # fresh folder: starts
    assert rc == 0 and "resuming" not in err and len(_rows(run)) == 1
    rc, err = _run(capsys, ["train", *_flags(data_dir, run, 3), "--resume", "auto"])  # last.pt: resumes, extends
    assert rc == 0 and f"resuming {run} after epoch 1" in err
    assert "resumed" in json.loads((run / "config.json").read_text())["meta"]
    train(_tiny_cfg(data_dir, straight, 3), progress=False, log=False)
    assert _loss_acc(run) == _loss_acc(straight) and _same_weights(run / "last.pt", straight / "last.pt")

    before = _files(run)  # finished: says so, trains nothing, exits 0
    rc, err = _run(capsys, ["train", "--out", str(run), "--resume", "auto", "--quiet"])
    assert rc == 0 and err == f"{run} already finished epoch 3 of 3; nothing to train\n"
    after = _files(run)
    assert {k: after[k] for k in ("last.pt", "best.pt", "metrics.csv")} == {k: before[k] for k in ("last.pt", "best.pt", "metrics.csv")}
    assert json.loads(after["summary.json"]) == json.loads(before["summary.json"])
    # plain --resume on the finished run still refuses; so does auto with fewer epochs than done
    assert "already finished epoch 3 of 3; pass a larger --epochs" in _bad(capsys, ["train", "--out", str(run), "--resume"])
    assert "already finished epoch 3 of 2" in _bad(capsys, ["train", "--out", str(run), "--resume", "auto", "--epochs", "2"])
    # another config: one line, nothing written
    err = _bad(capsys, ["train", *_flags(data_dir, run, 4), "--resume", "auto", "--lr", "0.1"])
    assert "written by another config (lr: 0.001 -> 0.1); only channels_last, compile," in err
    assert _files(run) == after


def test_resume_auto_needs_out_and_only_a_lone_config_json_counts_as_unstarted(data_dir, tmp_path, capsys):
    assert "--resume auto needs --out" in _bad(capsys, ["train", "--resume", "auto"])
    assert "takes no value or 'auto'" in _run_argparse_error(capsys, ["train", "--resume", "yes"])
    run = tmp_path / "unstarted"  # killed before its first checkpoint: only config.json
    train(_tiny_cfg(data_dir, run, 1), progress=False, log=False)
    for name in ("metrics.csv", "summary.json", "last.pt", "best.pt"):
        (run / name).unlink()
    assert "already holds a run" in _bad(capsys, ["train", *_flags(data_dir, run, 1)])
    rc, _ = _run(capsys, ["train", *_flags(data_dir, run, 1), "--resume", "auto", "--quiet"])
    assert rc == 0 and len(_rows(run)) == 1
    (run / "last.pt").unlink()  # metrics.csv without last.pt: not ours to overwrite
    assert "already holds a run" in _bad(capsys, ["train", *_flags(data_dir, run, 1), "--resume", "auto"])


def _run_argparse_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_resume_brings_metrics_and_best_pt_in_line_with_last_pt(data_dir, tmp_path, capsys):
    """Kills between writing last.pt, best.pt and metrics.csv (faked on a 1-epoch run, whose last.pt is
    necessarily its best), then --resume auto: the folder agrees with last.pt again."""
    run = tmp_path / "run"
    train(_tiny_cfg(data_dir, run, 1), progress=False, log=False)
    rows = _rows(run)
    with open(run / "metrics.csv", "a") as f:  # a row past last.pt's epoch ...
        f.write(",".join(["2"] + ["0.5"] * 7) + "\n")
    (run / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")  # ... an interrupted write ...
    (run / "best.pt").unlink()  # ... and a kill before best.pt was written
    rc, err = _run(capsys, ["train", "--out", str(run), "--resume", "auto", "--quiet"])
    assert rc == 0 and "already finished epoch 1 of 1" in err
    assert _rows(run) == rows and len(rows) == 1
    assert not list(run.glob(".*.tmp"))
    assert (run / "best.pt").read_bytes() == (run / "last.pt").read_bytes()
    _truncate(run / "best.pt")  # a damaged best.pt is restored the same way
    with open(run / "metrics.csv", "w") as f:  # metrics.csv one epoch behind last.pt
        f.write(",".join(rows[0]) + "\n")
    assert _run(capsys, ["train", "--out", str(run), "--resume", "auto", "--quiet"])[0] == 0
    assert _rows(run) == rows and (run / "best.pt").read_bytes() == (run / "last.pt").read_bytes()


def test_a_restarted_torchrun_worker_resumes_only_its_own_job(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    R.write_config(run, resolve_config(), R.run_meta(torch.device("cpu"), 2))
    assert R.read_meta(run)["torchelastic_run_id"] == "job-a"
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert RS.effective_mode("new", run) == "new"  # first attempt: what the command asked for
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert [RS.effective_mode(m, run) for m in RS.MODES] == ["auto"] * 3  # a restart in its own folder
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-b")  # a folder of another job: as asked
    assert [RS.effective_mode(m, run) for m in RS.MODES] == list(RS.MODES)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default --rdzv-id: jobs look alike
    assert RS.effective_mode("new", run) == "auto"
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "2")
    with pytest.raises(UserError, match="torchrun --max-restarts needs --out DIR"):
        RS.check_restartable(resolve_config())
    RS.check_restartable(resolve_config(overrides={"out": str(run)}))


# ---------------------------------------------------------------------- damaged state: one line
def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("resume", [[], ["auto"]])
def test_truncated_last_pt_on_resume(run_copy, capsys, resume):
    _truncate(run_copy / "last.pt")
    before = _files(run_copy)
    err = _bad(capsys, ["train", "--out", str(run_copy), "--resume", *resume, "--epochs", "3"])
    assert f"checkpoint {run_copy / 'last.pt'} is damaged (truncated or not a PyTorch file)" in err
    assert f"copy best.pt over last.pt in {run_copy} and --resume again; or start a fresh --out" in err
    assert _files(run_copy) == before


def test_the_advice_to_copy_best_pt_works(run_copy, capsys):
    best_epoch = torch.load(run_copy / "best.pt", weights_only=True)["epoch"]
    _truncate(run_copy / "last.pt")
    shutil.copyfile(run_copy / "best.pt", run_copy / "last.pt")
    rc, err = _run(capsys, ["train", "--out", str(run_copy), "--resume", "--epochs", "3"])
    assert rc == 0 and f"after epoch {best_epoch}" in err
    assert [r["epoch"] for r in _rows(run_copy)] == ["1", "2", "3"]


def test_damaged_last_and_best_pt_on_resume_and_eval(run_copy, capsys):
    _truncate(run_copy / "best.pt", 0.1)
    err = _bad(capsys, ["eval", str(run_copy / "best.pt")])
    assert f"checkpoint {run_copy / 'best.pt'} is damaged" in err and f"evaluate {run_copy / 'last.pt'} instead" in err
    _truncate(run_copy / "last.pt", 0.9)
    err = _bad(capsys, ["eval", str(run_copy)])  # a run folder means its last.pt; best.pt is no way out either
    assert f"checkpoint {run_copy / 'last.pt'} is damaged" in err and "pass another checkpoint or retrain the run" in err
    err = _bad(capsys, ["train", "--out", str(run_copy), "--resume", "--epochs", "3"])
    assert err.endswith("is damaged (truncated or not a PyTorch file); start a fresh --out\n")
    damaged = run_copy.parent / "damaged.pt"
    damaged.write_bytes(b"")
    assert f"checkpoint {damaged} is damaged (truncated or not a PyTorch file); pass another" in _bad(capsys, ["eval", str(damaged)])


@pytest.mark.parametrize("content, message", [
    ({"weights": torch.zeros(2)}, "is not a gaaf checkpoint (format 1): it has no format entry"),
    ([torch.zeros(2)], "is not a gaaf checkpoint (format 1): it holds a list, not a dict"),
    ({"format": 1, "model": {}, "config": {}, "epoch": 1}, "is not a gaaf checkpoint (format 1): it has no optimizer, metrics, rng"),
    (torch.nn.Linear(2, 2), "is not a gaaf checkpoint (it holds Python objects, not plain tensors and data)"),
])
def test_a_last_pt_that_is_not_a_gaaf_checkpoint(run_copy, capsys, content, message):
    torch.save(content, run_copy / "last.pt")
    err = _bad(capsys, ["train", "--out", str(run_copy), "--resume", "auto", "--epochs", "3"])
    assert f"{run_copy / 'last.pt'} {message}" in err and "copy best.pt over last.pt" in err


@pytest.mark.parametrize("damage, as_config_file", [
    (b'{"config": {"model": "ml', "cannot parse config file"),
    (b"\x80\x81\xff garbage", "cannot parse config file"),
    (b"[1, 2]", "a config must be a table/object of fields, got list"),
])
def test_a_damaged_config_json_on_resume(run_copy, capsys, damage, as_config_file):
    """last.pt holds the config: the resume goes on, says so in one line and writes a good config.json."""
    (run_copy / "config.json").write_bytes(damage)
    rc, err = _run(capsys, ["train", "--out", str(run_copy), "--resume", "--epochs", "3", "--quiet"])
    assert rc == 0 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"gaaf: warning: {run_copy / 'config.json'} is damaged (") and "rewriting it from last.pt's config" in err
    written = json.loads((run_copy / "config.json").read_text())
    assert written["config"]["epochs"] == 3 and written["config"]["model"] == "mlp" and written["meta"]["world_size"] == 1
    assert len(_rows(run_copy)) == 3
    (run_copy / "config.json").write_bytes(damage)  # the same file passed as --config: one-line error
    assert as_config_file in _bad(capsys, ["train", "--config", str(run_copy / "config.json"), "--out", str(run_copy.parent / "again")])


# ---------------------------------------------------------------------- torchrun --max-restarts
ELASTIC_DRIVER = textwrap.dedent("""
    # `gaaf train` as torchrun runs it, plus one test-only callback: in the first attempt, rank 1 writes
    # its pid to $HOLD_FILE at the 2nd training step of epoch 2 and waits there for the test to kill it.
    import os, sys, time
    import gaaf.train.engine as engine
    from gaaf.cli import main
    from gaaf.io import atomic_write_text

    class HoldRank1InEpoch2:
        def on_train_start(self, state):
            if state.rank != 1 or os.environ["TORCHELASTIC_RESTART_COUNT"] != "0":
                return
            steps = []

            def hook(module, inputs):
                if module.training and state.epoch == 1:  # state.epoch: the last finished epoch
                    steps.append(1)
                    if len(steps) == 2:  # step 1's gradient all-reduce is done: rank 0 wrote epoch 1's files
                        atomic_write_text(os.environ["HOLD_FILE"], str(os.getpid()))
                        time.sleep(600)
            state.model.register_forward_pre_hook(hook)

    plain_train = engine.train
    engine.train = lambda cfg, **kw: plain_train(cfg, **{**kw, "callbacks": [HoldRank1InEpoch2()]})
    sys.exit(main(sys.argv[1:]))
""")


def _env() -> dict:
    # one thread per process: identical float sums in every process, and kind to a shared CPU
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


@pytest.mark.slow
def test_torchrun_restarts_after_a_rank_is_killed_and_ends_as_an_uninterrupted_run(data_dir, tmp_path):
    killed, straight, hold = tmp_path / "killed", tmp_path / "straight", tmp_path / "rank1.pid"
    driver = tmp_path / "driver.py"
    driver.write_text(ELASTIC_DRIVER)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    log = open(tmp_path / "torchrun.log", "w+")
    proc = subprocess.Popen([*torchrun, "--max-restarts", "1", str(driver), "train", *_flags(data_dir, killed, 3)],
                            env={**_env(), "HOLD_FILE": str(hold)}, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not hold.exists():
            assert proc.poll() is None, (tmp_path / "torchrun.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "rank 1 never reached epoch 2"
            time.sleep(0.05)
        assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 1 and len(_rows(killed)) == 1
        os.kill(int(hold.read_text()), signal.SIGKILL)  # rank 1, in the middle of epoch 2
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "torchrun.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    assert f"resuming {killed} after epoch 1" in output and output.count("final test acc") == 1

    r = subprocess.run([*torchrun, "-m", "gaaf", "train", *_flags(data_dir, straight, 3)], env=_env(), cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_rows(killed)) == 3 and _loss_acc(killed) == _loss_acc(straight)  # exact: see the report
    assert _same_weights(killed / "last.pt", straight / "last.pt")
    assert _same_weights(killed / "best.pt", straight / "best.pt")
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2 and summary["epochs"] == 3
