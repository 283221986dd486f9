"""`gaaf sweep`: planning, validation before anything runs, and real end-to-end sweeps of tiny MLPs
on a fake CIFAR-10 (skip of finished runs, resume of an interrupted one, a failing run recorded
and counted in the exit status), locally and — when ray is importable — on a local Ray instance."""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from gaaf.cli import main
from gaaf.errors import UserError
from gaaf.experiments import folders
from gaaf.experiments.study import parse_study
from gaaf.experiments.sweep import child_env, config_differences, plan, threads_per_job


def _study(tmp_path: Path, data_dir: Path, runs: str, seeds: str = "[0]") -> Path:
    """A study of tiny MLP runs on the fake CIFAR-10 in `data_dir` (1 epoch, a handful of images)."""
    text = f"""title = "tiny"
seeds = {seeds}
baseline = "relu"

[base]
model = "mlp"
hidden = [8]
dataset = "cifar10"
data_dir = "{data_dir}"
download = false
device = "cpu"
epochs = 1
batch_size = 16
limit_train = 32
limit_test = 16
{runs}"""
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


RELU = '\n[[runs]]\nname = "relu"\nactivation = "relu"\n'
GAAF = '\n[[runs]]\nname = "gaaf_relu-shift=-1"\nactivation = "gaaf_relu"\nshift = -1.0\n'


def test_threads_and_env():
    assert threads_per_job(1, cores=8) == 8 and threads_per_job(3, cores=8) == 2 and threads_per_job(16, cores=2) == 1
    env = child_env(3)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3" and env["PYTHONUNBUFFERED"] == "1"
    assert env["TORCHINDUCTOR_COMPILE_THREADS"] == "3"


def test_child_env_spreads_job_slots_over_several_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert "CUDA_VISIBLE_DEVICES" not in child_env(2, slot=1, gpus=1)  # one GPU: every run shares it
    assert "CUDA_VISIBLE_DEVICES" not in child_env(2, slot=1, gpus=0)
    assert "CUDA_VISIBLE_DEVICES" not in child_env(2)                  # no slot (Ray): left alone
    assert [child_env(2, slot=k, gpus=2)["CUDA_VISIBLE_DEVICES"] for k in range(5)] == ["0", "1", "0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")  # the parent's own GPUs: the child gets one of them
    assert [child_env(1, slot=k, gpus=3)["CUDA_VISIBLE_DEVICES"] for k in range(4)] == ["4", "6", "7", "4"]


def test_sweep_gives_each_concurrent_run_its_own_slot(tmp_path: Path, monkeypatch):
    import threading

    from gaaf.experiments import launch
    from gaaf.experiments import sweep as sweep_mod

    study = parse_study('seeds = [0, 1, 2, 3, 4]\n[base]\nmodel = "mlp"\ndevice = "cuda"\n' + RELU)
    runs = plan(study, tmp_path)
    monkeypatch.setattr(sweep_mod, "cuda_device_count", lambda runs: 2)
    seen, running, lock = [], set(), threading.Lock()

    def fake_execute(cmd, env, echo=None, procs=None, pass_fds=()):
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert env["TORCHINDUCTOR_COMPILE_THREADS"] == env["OMP_NUM_THREADS"]
            assert gpu not in running  # two jobs, two GPUs: never two runs on one GPU at once
            running.add(gpu)
            seen.append(gpu)
        time.sleep(0.05)
        with lock:
            running.discard(gpu)
        return 1, "fake", 0.0

    monkeypatch.setattr(launch, "execute", fake_execute)
    sweep_mod.Sweep(runs, jobs=2, out=io.StringIO()).run()
    assert len(seen) == 5 and set(seen) == {"0", "1"}


def test_plan_layout_states_and_overrides(tmp_path: Path):
    study = parse_study('seeds = [0, 1]\n[base]\nmodel = "mlp"\n' + RELU + GAAF)
    runs = plan(study, tmp_path / "out", {"epochs": 3, "limit_train": None}, seeds=[1, 2])
    assert [r.label for r in runs] == ["relu/seed1", "relu/seed2", "gaaf_relu-shift=-1/seed1", "gaaf_relu-shift=-1/seed2"]
    r = runs[2]
    assert r.folder == (tmp_path / "out").resolve() / "runs" / "gaaf_relu-shift=-1" / "seed1"
    assert r.config_file == (tmp_path / "out").resolve() / "configs" / "gaaf_relu-shift=-1" / "seed1.json"
    assert (r.config["epochs"], r.config["seed"], r.config["shift"], r.config["model"]) == (3, 1, -1.0, "mlp")
    assert r.state == folders.MISSING and not r.resume
    assert r.command()[-4:] == ["--config", str(r.config_file), "--out", str(r.folder)]


def test_existing_folder_with_other_settings_is_refused(tmp_path: Path):
    study = parse_study('[base]\nmodel = "mlp"\n' + RELU)
    (run,) = plan(study, tmp_path)
    run.folder.mkdir(parents=True)
    (run.folder / "config.json").write_text(json.dumps({"config": {**run.config, "lr": 0.5, "device": "cuda"}}))
    assert config_differences(run.folder, run.config) == "lr 0.5 → 0.001"  # device is ignored
    with pytest.raises(UserError, match=r"1 existing run folder under .* was made with different settings \(relu/seed0: lr 0.5"):
        plan(study, tmp_path)


def test_bad_study_lists_every_problem_and_runs_nothing(tmp_path: Path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[base]\nepochs = 0\n[[runs]]\nname = "a"\nshfit = 1\n[[runs]]\nname = "a"\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err and "line 2: base.epochs" in err and "line 5: runs[0].shfit" in err
    assert "line 7: runs[1].name: duplicate run name 'a'" in err
    assert not (tmp_path / "out").exists()


def test_ray_backend_without_address_misuse(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    study = _study(tmp_path, fake_cifar10_dir, RELU)
    assert main(["sweep", str(study), "--out", str(tmp_path / "o"), "--address", "x:1"]) == 2
    assert "--address is only used with --backend ray" in capsys.readouterr().err


def test_dry_run_prints_plan_and_estimate_and_writes_nothing(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    study = _study(tmp_path, fake_cifar10_dir, RELU + GAAF, seeds="[0, 1]")
    assert main(["sweep", str(study), "--out", str(tmp_path / "out"), "--dry-run", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 runs × 2 seeds = 4 run folders" in out and "0 done, 0 to resume, 4 to start" in out
    assert "estimate: ~" in out and "ms/step measured on mlp at batch 16" in out
    assert "gaaf_relu-shift=-1/seed1" in out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_end_to_end_skip_resume_and_failure(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    broken = '\n[[runs]]\nname = "broken"\nactivation = "relu"\nlr = 1e30\n'  # diverges: NaN loss, exit 2
    study = _study(tmp_path, fake_cifar10_dir, RELU + GAAF + broken)
    out = tmp_path / "sweep"

    # 1. first sweep, two at a time: two runs finish, the one that diverges fails and is counted
    rc = main(["sweep", str(study), "--out", str(out), "--jobs", "2", "--no-estimate", "--epochs", "1"])
    printed = capsys.readouterr().out
    assert rc == 1, printed
    relu, gaaf, bad = (folders.run_dir(out, n, 0) for n in ("relu", "gaaf_relu-shift=-1", "broken"))
    assert folders.is_finished(relu) and folders.is_finished(gaaf)
    assert folders.state(bad) == folders.FAILED
    error = (bad / "error.txt").read_text()
    assert "exit status 2" in error and "gaaf: error:" in error and "--out" in error
    saved = json.loads((out / "study.json").read_text())
    assert [r["name"] for r in saved["runs"]] == ["relu", "gaaf_relu-shift=-1", "broken"]
    assert saved["study"]["baseline"] == "relu" and saved["runs"][1]["config"]["shift"] == -1.0
    assert json.loads((relu / "config.json").read_text())["config"]["limit_train"] == 32
    assert "sweep: 2/3 finished, 1 failed" in printed

    # 2. interrupt relu (its last.pt stays, summary.json goes) and sweep again with 2 epochs:
    #    relu resumes from its checkpoint, gaaf (finished at 1 epoch) is resumed and extended,
    #    broken is tried again and fails again
    (relu / "summary.json").unlink()
    assert folders.state(relu) == folders.INTERRUPTED
    rc = main(["sweep", str(study), "--out", str(out), "--no-estimate", "--epochs", "2"])
    printed = capsys.readouterr().out
    assert rc == 1, printed
    assert "0 done, 1 to resume, 1 to extend, 1 to start (1 failed before, trying again)" in printed
    assert "start relu/seed0 (resume)" in printed and "start gaaf_relu-shift=-1/seed0 (resume)" in printed
    for folder in (relu, gaaf):
        assert folders.is_finished(folder) and folders.epochs_done(folder) == 2
        assert "resumed" in json.loads((folder / "config.json").read_text())["meta"]
    gaaf_mtime = (gaaf / "summary.json").stat().st_mtime_ns

    # 3. the same again: nothing left but the broken run (dropped from the study here, so that
    #    nothing runs at all): finished runs are skipped and left untouched
    study.write_text(study.read_text().replace(broken, ""))
    rc = main(["sweep", str(study), "--out", str(out), "--no-estimate", "--epochs", "2"])
    printed = capsys.readouterr().out
    assert rc == 0 and "2 done, 0 to resume, 0 to start" in printed and "start " not in printed
    assert (gaaf / "summary.json").stat().st_mtime_ns == gaaf_mtime
    # asking for fewer epochs than a folder holds is refused before anything runs
    assert main(["sweep", str(study), "--out", str(out), "--no-estimate", "--epochs", "1"]) == 2
    assert "has 2 epochs, more than the 1 asked" in capsys.readouterr().err

    # 4. the report compares the finished runs (broken is no longer part of the study)
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| relu | cifar10 | mlp | relu | - | 32 of 50,000 | 16 of 10,000 | 2 |" in printed
    assert "| gaaf_relu-shift=-1 |" in printed
    assert "broken" not in printed
    assert (out / "report" / "learning_curves.png").is_file()


@pytest.mark.slow
def test_ray_backend_runs_the_same_study(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    pytest.importorskip("ray")
    study = _study(tmp_path, fake_cifar10_dir, RELU)
    out = tmp_path / "sweep"
    rc = main(["sweep", str(study), "--out", str(out), "--backend", "ray", "--no-estimate"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "submit relu/seed0" in printed and folders.is_finished(folders.run_dir(out, "relu", 0))


def test_ray_missing_is_a_clear_error(tmp_path: Path, fake_cifar10_dir: Path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("hidden for this test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    study = _study(tmp_path, fake_cifar10_dir, RELU)
    assert main(["sweep", str(study), "--out", str(tmp_path / "o"), "--backend", "ray", "--no-estimate"]) == 2
    assert "--backend ray needs the ray package" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "runs" / "relu" / "seed0" / "summary.json")


def test_failed_runs_exit_1_whatever_their_number(tmp_path: Path, fake_cifar10_dir: Path, monkeypatch, capsys):
    """2 stays "bad input": three failed runs exit 1 (the count is printed, not put in the status)."""
    from gaaf.experiments import launch

    study = tmp_path / "s.toml"
    study.write_text(f'seeds = [0, 1, 2]\n[base]\nmodel = "mlp"\ndata_dir = "{fake_cifar10_dir}"\ndownload = false\n' + RELU)
    monkeypatch.setattr(launch, "execute", lambda cmd, env, echo=None, procs=None, pass_fds=(): (3, "boom", 0.0))
    rc = main(["sweep", str(study), "--out", str(tmp_path / "o"), "--no-estimate"])
    printed = capsys.readouterr().out
    assert rc == 1, printed
    assert "0/3 finished, 3 failed" in printed


def test_missing_data_is_one_error_before_any_run(tmp_path: Path, monkeypatch, capsys):
    from gaaf.experiments import launch

    started = []
    monkeypatch.setattr(launch, "execute", lambda *a, **k: started.append(a) or (0, "", 0.0))
    study = tmp_path / "s.toml"
    study.write_text(f'seeds = [0, 1]\n[base]\nmodel = "mlp"\ndata_dir = "{tmp_path / "nothing"}"\ndownload = false\n' + RELU + GAAF)
    rc = main(["sweep", str(study), "--out", str(tmp_path / "o"), "--no-estimate"])
    captured = capsys.readouterr()
    assert rc == 2 and started == []
    assert len(captured.err.strip().splitlines()) == 1 and "cifar10" in captured.err and "--no-download" in captured.err
    assert "2 runs × 2 seeds = 4 run folders" in captured.out
    assert not (tmp_path / "o" / "runs").exists()


def test_failure_lines_are_cut_between_words_only():
    from gaaf.experiments.sweep import shorten

    url = "https://example.org/very/long/path/cifar-10-python.tar.gz"
    msg = "gaaf: error: cifar10: could not download " + url + " (timed out); put it at /data/x"
    assert shorten(msg) == msg  # fits: whole
    long = ("word " * 100) + url
    cut = shorten(long, limit=100)
    assert cut.endswith(" …") and url not in cut and len(cut) <= 102
    assert shorten("x" * 500, limit=50) == "x" * 50 + " …"  # no space at all: cut at the limit
