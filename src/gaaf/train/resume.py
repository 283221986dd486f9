"""Where a run starts: fresh in an empty --out, or from OUT/last.pt (`gaaf train --resume [auto]`).

Modes:

    new     (no --resume)     OUT must not hold a run (`runfolder.prepare_new_run`)
    resume  (--resume)        OUT/last.pt must exist, be readable and fit the config; continue after its epoch
    auto    (--resume auto)   resume when OUT/last.pt exists, else start fresh. A run that already
                              finished exactly its --epochs trains zero epochs (summary.json is rewritten)

Elastic restarts. `torchrun --max-restarts N` restarts every worker after any failure with the same
command line and TORCHELASTIC_RESTART_COUNT > 0; by the PyTorch elastic convention a restarted script
continues from its checkpoint. A restarted worker therefore runs in `auto` mode when OUT was written by
this very torchrun job: config.json's meta.torchelastic_run_id equals TORCHELASTIC_RUN_ID (a fresh uuid
per `torchrun --standalone`, else --rdzv-id). A folder from another job keeps the mode the command asked
for, so a first attempt refused because --out held another run is refused again on every restart rather
than resuming that run. (With torchrun's default --rdzv-id `none` jobs cannot be told apart and a restart
always runs in `auto` mode.) torchrun stops every worker before it restarts them, so nothing writes to OUT
while the restarted rank 0 reads it; rank 0 alone reads last.pt and sends it to the other ranks.

Consistency. Each epoch rank 0 writes last.pt, then best.pt (when the epoch is the best so far), then
metrics.csv, each atomically. A kill can leave metrics.csv one epoch behind last.pt, best.pt older than
last.pt's best epoch, and the temp file of an interrupted write. `reconcile` brings the folder back in
line with the checkpoint on every resume: metrics.csv is rewritten from the checkpoint's rows (which also
drops rows past its epoch, e.g. after resuming from a best.pt copied over last.pt), best.pt is restored
from last.pt when that is the best epoch, and stale temp files go.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..io import atomic_write_bytes
from . import runfolder as R
from .checkpoint import check_resume_compatible, load_checkpoint
from .config import TrainConfig

MODES = ("new", "resume", "auto")


def mode_of(resume: bool | str | None) -> str:
    """train(resume=...) → a mode: False/None → new, True → resume, or a mode's name."""
    if resume is None or resume is False:
        return "new"
    if resume is True:
        return "resume"
    if resume in MODES:
        return str(resume)
    raise UserError(f"resume must be True, False or 'auto', got {resume!r}")


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


def restart_count() -> int:
    """How often torchrun has restarted this job's workers (0: first attempt, or not under torchrun)."""
    return _env_int("TORCHELASTIC_RESTART_COUNT")


def check_restartable(cfg: TrainConfig) -> None:
    """A job torchrun may restart needs a fixed --out: the default one is named after the start time."""
    if cfg.out is None and _env_int("TORCHELASTIC_MAX_RESTARTS") > 0:
        raise UserError("torchrun --max-restarts needs --out DIR: a restarted job continues the run in that folder")


def effective_mode(mode: str, out: Path) -> str:
    """`auto` for a worker torchrun restarted in its own job's run folder, else `mode`."""
    if restart_count() == 0 or mode == "auto":
        return mode
    job = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if job in ("", "none") or R.read_meta(out).get("torchelastic_run_id") == job:
        return "auto"
    return mode


def open_run(out: Path, cfg: TrainConfig, mode: str) -> dict[str, Any] | None:
    """Rank 0: check OUT for `mode`; return the checkpoint to continue from, or None to start fresh.
    Raises UserError (one line) when OUT may not be used so."""
    mode = effective_mode(mode, out)
    last = out / "last.pt"
    if mode == "new" or (mode == "auto" and not last.exists()):
        R.prepare_new_run(out, unstarted_ok=mode == "auto")
        return None
    ckpt = load_checkpoint(last, resume=True)
    check_resume_compatible(ckpt, cfg, last, finished_ok=mode == "auto")
    R.check_writable(out)
    return ckpt


def reconcile(out: Path, ckpt: dict[str, Any]) -> str | None:
    """Rank 0, on resume: bring OUT's files in line with `ckpt` (OUT/last.pt; see the module doc).
    Returns the run's creation time from config.json (None, with a warning, when it is damaged)."""
    problem = R.config_json_problem(out)
    if problem:
        print(f"gaaf: warning: {out / 'config.json'} is damaged ({problem}); "
              f"rewriting it from last.pt's config (its creation time is lost)", file=sys.stderr)
    R.write_metrics(out, ckpt["metrics"])
    best = out / "best.pt"
    if ckpt["best_epoch"] == ckpt["epoch"] and _epoch_of(best) != ckpt["epoch"]:
        atomic_write_bytes(best, (out / "last.pt").read_bytes())  # what the engine writes: last.pt's bytes
    _remove_temp_files(out)
    return None if problem else R.read_meta(out).get("created")


def _epoch_of(path: Path) -> int | None:
    """The epoch entry of a checkpoint; None when it is missing or unreadable."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # missing, truncated, foreign: all mean "not the checkpoint we want"
        return None


def _remove_temp_files(out: Path) -> None:
    """Temp files of atomic writes a kill interrupted (gaaf.io names them .NAME.XXXX.tmp)."""
    for name in (*R.RUN_FILES, "best.pt"):
        for tmp in out.glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass
