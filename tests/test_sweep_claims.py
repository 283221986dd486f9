"""Run-folder claims (gaaf.train.claim): one process trains into a run folder at a time.

The claim itself (busy, released, taken over after SIGKILL), `gaaf train` refusing a folder another
process holds, a sweep skipping a held run as "running elsewhere" without touching it, two sweeps
started together on one --out training every run once, and killed sweeps (the whole process group,
or the sweep alone while its child trains) leaving nothing that blocks the next sweep."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaaf.cli import main
from gaaf.experiments import folders
from gaaf.train import claim
from test_sweep import GAAF, RELU, _study

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 300  # generous upper bound for a subprocess to reach a state; never a pass/fail threshold


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _sweep_cmd(study: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gaaf", "sweep", str(study), "--out", str(out), "--no-estimate", *extra]


def _wait_for(what: str, check) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _trained_once(folder: Path) -> None:
    """Finished, one epoch recorded once, never resumed, no error.txt, no claim left behind."""
    assert folders.is_finished(folder), folder
    assert [r["epoch"] for r in folders.read_metrics(folder)] == [1.0]
    assert "resumed" not in json.loads((folder / "config.json").read_text())["meta"]
    assert not (folder / "error.txt").exists()
    assert not (folder / claim.LOCK_FILE).exists() and not (folder / claim.INFO_FILE).exists()


def _claim_in_subprocess(folder: Path) -> subprocess.Popen:
    """A process that claims `folder`, says so on stdout and then waits to be killed."""
    code = ("import sys, time; from gaaf.train import claim; c = claim.take(sys.argv[1]); "
            "print('held', flush=True); time.sleep(3600)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], env=_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


# ---------------------------------------------------------------------- the claim itself
def test_claim_is_exclusive_names_its_holder_and_cleans_up(tmp_path: Path):
    folder = tmp_path / "run"
    with claim.take(folder) as held:
        assert held.owner and held.made and folder.is_dir()
        info = json.loads((folder / claim.INFO_FILE).read_text())
        assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
        with pytest.raises(claim.ClaimBusy, match=rf"is being trained by another process \({socket.gethostname()}, pid {os.getpid()}, since "):
            claim.take(folder)  # another open file, even in this process: refused
    assert not folder.exists()  # it made the folder and nothing was written: nothing is left
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with claim.take(folder):
        pass
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]  # a folder it did not make stays
    with claim.take(folder):  # and can be claimed again
        pass


def test_a_claim_dies_with_its_process(tmp_path: Path):
    folder = tmp_path / "run"
    proc = _claim_in_subprocess(folder)
    try:
        with pytest.raises(claim.ClaimBusy, match=rf"pid {proc.pid},"):
            claim.take(folder)
    finally:
        proc.kill()
        proc.wait()
    assert (folder / claim.LOCK_FILE).exists()  # SIGKILL: no clean-up, the files stay ...
    with claim.take(folder):  # ... and block nothing
        assert json.loads((folder / claim.INFO_FILE).read_text())["pid"] == os.getpid()


def test_gaaf_train_refuses_a_folder_another_process_trains_into(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    out = tmp_path / "run"
    proc = _claim_in_subprocess(out)
    try:
        rc = main(["train", "--model", "mlp", "--hidden", "8", "--data-dir", str(fake_cifar10_dir), "--no-download",
                   "--device", "cpu", "--epochs", "1", "--out", str(out), "--quiet"])  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{out} is being trained by another process ({socket.gethostname()}, pid {proc.pid}, since" in err
    assert sorted(p.name for p in out.iterdir()) == [claim.INFO_FILE, claim.LOCK_FILE]  # nothing written


# ---------------------------------------------------------------------- sweeps
@pytest.mark.slow
def test_sweep_skips_a_run_held_elsewhere_and_leaves_its_folder_alone(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    study = _study(tmp_path, fake_cifar10_dir, RELU + GAAF)
    out = tmp_path / "sweep"
    held = folders.run_dir(out, "relu", 0)
    held.mkdir(parents=True)
    (held / "notes.txt").write_text("the other process's\n")
    proc = _claim_in_subprocess(held)
    try:
        rc = main(["sweep", str(study), "--out", str(out), "--no-estimate"])
        printed = capsys.readouterr().out
        assert main(["report", str(out), "--no-plots"]) == 0
        reported = capsys.readouterr().out
    finally:
        proc.kill()
        proc.wait()
    assert rc == 0, printed
    assert f"`relu/seed0`: running ({socket.gethostname()}, pid {proc.pid}, since" in reported
    assert "; included once it finishes" in reported
    assert main(["report", str(out), "--no-plots"]) == 0  # its holder is gone: no longer running
    assert "`relu/seed0`: missing" in capsys.readouterr().out
    assert f"relu/seed0: running elsewhere ({socket.gethostname()}, pid {proc.pid}," in printed
    assert "sweep: 1/2 finished, 0 failed, 1 running elsewhere" in printed
    assert f"gaaf report {out} includes them once they finish" in printed
    assert "start relu/seed0" not in printed
    assert sorted(p.name for p in held.iterdir()) == [claim.INFO_FILE, claim.LOCK_FILE, "notes.txt"]
    _trained_once(folders.run_dir(out, "gaaf_relu-shift=-1", 0))


@pytest.mark.slow
def test_two_sweeps_started_together_train_every_run_once(tmp_path: Path, fake_cifar10_dir: Path):
    study = _study(tmp_path, fake_cifar10_dir, RELU + GAAF, seeds="[0, 1]")
    out = tmp_path / "sweep"
    procs = [subprocess.Popen(_sweep_cmd(study, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=WAIT_S)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    labels = [f"{name}/seed{s}" for name in ("relu", "gaaf_relu-shift=-1") for s in (0, 1)]
    both = "\n".join(outputs)
    for label in labels:  # each run started by exactly one of the two
        assert both.count(f"start {label}\n") + both.count(f"start {label} (resume)\n") == 1, both
        _trained_once(out / "runs" / label)
    assert "FAILED" not in both


@pytest.mark.slow
def test_a_sweep_killed_with_its_children_blocks_nothing(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    study = _study(tmp_path, fake_cifar10_dir, RELU + GAAF)
    out = tmp_path / "sweep"
    proc = subprocess.Popen(_sweep_cmd(study, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: the sweep and its children  # fmt: skip
    relu = folders.run_dir(out, "relu", 0)
    _wait_for("the first run's claim", lambda: (relu / claim.INFO_FILE).exists())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(["sweep", str(study), "--out", str(out), "--no-estimate"]) == 0, capsys.readouterr().out
    assert "running elsewhere" not in capsys.readouterr().out
    for name in ("relu", "gaaf_relu-shift=-1"):
        folder = folders.run_dir(out, name, 0)
        assert folders.is_finished(folder) and not (folder / "error.txt").exists()
        assert not (folder / claim.LOCK_FILE).exists()


@pytest.mark.slow
def test_a_sweep_killed_alone_leaves_the_claim_to_its_training_child(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    study = _study(tmp_path, fake_cifar10_dir, RELU)
    out = tmp_path / "sweep"
    proc = subprocess.Popen(_sweep_cmd(study, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    relu = folders.run_dir(out, "relu", 0)

    def child_adopted() -> bool:  # the train child rewrites claim.json with its own pid
        info = folders.read_json(relu / claim.INFO_FILE)
        return isinstance(info, dict) and info.get("parent_pid") == proc.pid

    try:
        _wait_for("the train child to adopt the claim", child_adopted)
        child = json.loads((relu / claim.INFO_FILE).read_text())["pid"]
        os.kill(child, signal.SIGSTOP)  # holds the claim, but cannot finish while we look
        os.kill(proc.pid, signal.SIGKILL)  # the sweep alone
        proc.wait()
        with pytest.raises(claim.ClaimBusy, match=rf"pid {child},"):
            claim.take(relu)  # the child still holds it
        os.kill(child, signal.SIGKILL)  # now the last holder dies too
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _wait_for("the killed child's claim to go", lambda: _free(relu))
    assert main(["sweep", str(study), "--out", str(out), "--no-estimate"]) == 0, capsys.readouterr().out
    assert folders.is_finished(relu) and not (relu / "error.txt").exists()
    assert not (relu / claim.LOCK_FILE).exists()


def _free(folder: Path) -> bool:
    try:
        claim.take(folder).release()
    except claim.ClaimBusy:
        return False
    return True
