"""`gaaf sweep --jobs auto` (gaaf.experiments.jobs): one single-thread run per core, as memory,
GPUs and the runs to do allow; an explicit --jobs N as given."""
from __future__ import annotations

from pathlib import Path

import pytest

from gaaf.cli import main
from gaaf.experiments.jobs import JOB_MEMORY_BYTES, auto_jobs, parse_jobs, resolve_jobs
from test_sweep import GAAF, RELU, _study


def test_auto_jobs_rule():
    plenty = 64 * JOB_MEMORY_BYTES
    assert auto_jobs(10, cores=2, memory=plenty) == 2           # one run per core
    assert auto_jobs(100, cores=16, memory=plenty) == 16
    assert auto_jobs(10, cores=16, memory=3 * JOB_MEMORY_BYTES + 1) == 3  # memory caps it
    assert auto_jobs(1, cores=16, memory=plenty) == 1           # never more than the runs to do
    assert auto_jobs(10, cores=16, memory=JOB_MEMORY_BYTES // 2) == 1  # at least one
    assert auto_jobs(100, cores=16, memory=None) == 16          # memory unknown: cores decide
    assert auto_jobs(10, cores=16, memory=plenty, gpus=2) == 2  # CUDA runs: one per GPU
    assert auto_jobs(1, cores=16, memory=plenty, gpus=4) == 1


def test_parse_and_resolve():
    assert parse_jobs("auto") == "auto" and parse_jobs(" AUTO ") == "auto" and parse_jobs("3") == 3
    for bad in ("0", "-1", "1.5", "two", ""):
        with pytest.raises(ValueError, match="whole number >= 1 or 'auto'"):
            parse_jobs(bad)
    assert resolve_jobs(3, ["run"] * 10) == 3
    assert 1 <= resolve_jobs("auto", ["run"] * 10) <= 10


def test_cli_says_what_auto_chose_and_rejects_bad_values(tmp_path: Path, fake_cifar10_dir: Path, capsys):
    study = _study(tmp_path, fake_cifar10_dir, RELU + GAAF)
    assert main(["sweep", str(study), "--out", str(tmp_path / "out"), "--dry-run", "--no-estimate"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("jobs:"))
    assert "at a time" in line and "(--jobs auto)" in line and "1 thread each" in line
    assert main(["sweep", str(study), "--out", str(tmp_path / "out"), "--dry-run", "--jobs", "0"]) == 2
    assert "--jobs must be a whole number >= 1 or 'auto', got '0'" in capsys.readouterr().err
