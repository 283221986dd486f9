"""One run of a sweep, start to end, under its claim: the part that runs where the training runs
(in the sweep's own process locally, in a Ray task on a worker).

    claim the run folder (gaaf.train.claim)     held elsewhere → RUNNING_ELSEWHERE, the folder untouched
      finished meanwhile by another process?    → FINISHED_ELSEWHERE
      write the config file, clear a fresh start's leftovers and any old error.txt
      python -m gaaf train --config ... --out ... [--resume]   (the child inherits the claim)
      failed → error.txt (the command, its exit status and the tail of its output)
    release the claim

Everything the sweep writes into a run folder is written here, under the claim, so two sweeps on
one --out (or a sweep beside a hand-started `gaaf train`) never write into the same folder at once.
"""
from __future__ import annotations

import collections
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..io import atomic_write_json, atomic_write_text
from ..train import claim as claims
from . import folders

#: lines of a child's output kept for error.txt
TAIL_LINES = 60
FINISHED, FAILED = folders.FINISHED, folders.FAILED
RUNNING_ELSEWHERE, FINISHED_ELSEWHERE = "running elsewhere", "finished elsewhere"


@dataclass
class PlannedRun:
    name: str
    seed: int
    config: dict[str, Any]  # resolved train config (every field)
    folder: Path
    config_file: Path
    state: str  # folders.FINISHED / FAILED / INTERRUPTED / TO_EXTEND / MISSING

    @property
    def label(self) -> str:
        return f"{self.name}/seed{self.seed}"

    @property
    def resume(self) -> bool:
        return (self.folder / "last.pt").is_file()

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "gaaf", "train", "--config", str(self.config_file), "--out", str(self.folder)]
        return cmd + (["--resume"] if self.resume else [])


@dataclass
class Outcome:
    """What became of one run: status FINISHED / FAILED / RUNNING_ELSEWHERE / FINISHED_ELSEWHERE."""

    status: str
    rc: int = 0
    tail: str = ""
    seconds: float = 0.0
    holder: str = ""  # RUNNING_ELSEWHERE: who holds the claim (host, pid, since)
    why: str = ""  # FAILED: exit status, or what is wrong with the folder


def execute(cmd: list[str], env: dict[str, str], echo: Callable[[str], None] | None = None,
            procs: "set[subprocess.Popen] | None" = None,
            pass_fds: tuple[int, ...] = ()) -> tuple[int, str, float]:  # fmt: skip
    """Run `cmd`; return (exit status, the last lines of its output, seconds)."""
    t0 = time.perf_counter()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", stdin=subprocess.DEVNULL, pass_fds=pass_fds)  # fmt: skip
    if procs is not None:
        procs.add(proc)
    try:
        assert proc.stdout is not None  # we asked for a pipe
        for line in proc.stdout:  # text mode: "\r" progress updates arrive as separate lines
            line = line.rstrip("\n")
            tail.append(line)
            if echo is not None:
                echo(line)
        rc = proc.wait()
    finally:
        if procs is not None:
            procs.discard(proc)
    return rc, "\n".join(tail), time.perf_counter() - t0


def run_claimed(run: PlannedRun, env: dict[str, str], echo: Callable[[str], None] | None = None,
                procs: "set[subprocess.Popen] | None" = None,
                on_start: Callable[[bool], None] | None = None) -> Outcome:  # fmt: skip
    """Claim, prepare, train and record `run` (see the module docstring). `on_start(resume)` is called
    once the claim is held, just before the child starts. Only depends on its arguments (Ray)."""
    try:
        held = claims.take(run.folder)
    except claims.ClaimBusy as e:
        return Outcome(RUNNING_ELSEWHERE, holder=e.holder)
    with held:
        if folders.is_finished(run.folder) and (folders.epochs_done(run.folder) >= run.config["epochs"]
                                                or folders.reached_max_iterations(run.folder, run.config)):
            return Outcome(FINISHED_ELSEWHERE)  # by a process that held the claim before us
        resume = run.resume
        prepare(run, resume)
        if on_start is not None:
            on_start(resume)
        try:
            rc, tail, seconds = execute(run.command(), {**env, **held.child_env()}, echo, procs, held.pass_fds())
        except OSError as e:  # could not even start the interpreter
            rc, tail, seconds = 127, str(e), 0.0
        if rc == 0 and folders.is_finished(run.folder):
            return Outcome(FINISHED, rc, tail, seconds)
        return _failed(run, rc, tail, seconds)


def record_failure(run: PlannedRun, rc: int, tail: str) -> Outcome:
    """A run whose task died before it could say (a Ray worker lost): error.txt, written under the
    run's claim; RUNNING_ELSEWHERE when the claim is still held (its training outlived the task)."""
    try:
        with claims.take(run.folder):
            return _failed(run, rc, tail, 0.0)
    except claims.ClaimBusy as e:
        return Outcome(RUNNING_ELSEWHERE, holder=e.holder)


def _failed(run: PlannedRun, rc: int, tail: str, seconds: float) -> Outcome:
    """error.txt (the command, why, the tail of the output) and the FAILED outcome. Under the claim only."""
    why = f"exit status {rc}" if rc != 0 else "exited 0 but summary.json does not say finished"
    text = f"command: {' '.join(run.command())}\n{why}\n\n--- last {TAIL_LINES} lines of output ---\n{tail}\n"
    atomic_write_text(run.folder / "error.txt", text)
    return Outcome(FAILED, rc, tail, seconds, why=why)


def prepare(run: PlannedRun, resume: bool) -> None:
    """Write the run's config file; clear what a fresh start would refuse (a half-started folder:
    no last.pt, so nothing to resume) and any old error.txt. Only under the run's claim."""
    atomic_write_json(run.config_file, run.config)
    (run.folder / "error.txt").unlink(missing_ok=True)
    if not resume:
        for name in ("config.json", "metrics.csv", "summary.json"):
            (run.folder / name).unlink(missing_ok=True)
