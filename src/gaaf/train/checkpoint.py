"""Checkpoints: everything needed to continue a run bit-for-bit on the same device.

A checkpoint (``last.pt`` / ``best.pt``) is a dict:

    format        1
    model         state_dict of the unwrapped model (no DDP / torch.compile prefixes)
    optimizer     optimizer.state_dict()
    scheduler     {"lr_schedule": [...], "lr_schedule_unit": ..., "lr": float} — the schedule is a pure
                  function of the epoch or iteration (gaaf.train.schedule); lr: the last step's
    epoch         last finished epoch (1-based)
    iterations    optimizer steps taken in all (absent before max_iterations existed: whole epochs)
    best_acc, best_epoch
    metrics       every metrics.csv row so far (the source of truth: a kill between writing last.pt
                  and metrics.csv cannot lose a row)
    total_seconds wall time of the finished epochs, summed over resumes
    rng           one dict per rank: torch CPU, CUDA (if any), numpy, python `random`, loader generator
    config        TrainConfig as a dict

Written atomically (temp file + rename), so a SIGKILL leaves the previous checkpoint intact.
RNG states are stored as tensors / lists, so `torch.load(weights_only=True)` reads them.
"""
from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..io import atomic_save
from .config import TrainConfig, resolved_dict

FORMAT = 1

#: fields that may differ between a checkpoint's config and the resuming one: where and how long
#: to run, not what is trained. Everything else must match or the resumed run is a different run.
RESUME_MAY_CHANGE = frozenset(
    {"epochs", "out", "device", "data_dir", "download", "compile", "tensorboard", "probe", "probe_every",
     "channels_last"}
)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


# ---------------------------------------------------------------------- RNG
def rng_state(loader_generator: torch.Generator | None) -> dict[str, Any]:
    """This process's RNG states in weights_only-loadable form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
        "loader": loader_generator.get_state() if loader_generator is not None else None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ---------------------------------------------------------------------- save / load
def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    epoch: int,
    iterations: int,
    lr: float,
    best_acc: float,
    best_epoch: int,
    metrics: list[dict[str, Any]],
    total_seconds: float,
    rng: list[dict[str, Any]],
) -> None:
    ckpt = {
        "format": FORMAT,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"lr_schedule": [list(s) for s in cfg.lr_schedule], "lr_schedule_unit": cfg.lr_schedule_unit,
                      "lr": lr},
        "epoch": epoch,
        "iterations": iterations,
        "best_acc": best_acc,
        "best_epoch": best_epoch,
        "metrics": [dict(r) for r in metrics],
        "total_seconds": total_seconds,
        "rng": rng,
        "config": cfg.to_dict(),
    }
    atomic_save(path, lambda f: torch.save(ckpt, f))


#: entries every checkpoint has (gaaf eval needs these) and the ones a resume needs as well
_EVAL_KEYS = ("model", "config", "epoch")
_RESUME_KEYS = ("optimizer", "metrics", "rng", "best_acc", "best_epoch", "total_seconds")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *, resume: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; a run folder means its last.pt.

    A missing, unreadable, damaged (truncated, not a PyTorch file) or foreign file raises one
    UserError that names the file and what to do instead; `resume` also asks for the entries a
    resume needs (optimizer, RNG states, metrics, ...) and tailors that advice to --resume."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; train a run first (gaaf train --out DIR)")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise before our own message
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise UserError(f"checkpoint {path} is damaged (truncated or not a PyTorch file); {_advice(path, resume)}") from None
        raise UserError(f"{path} is not a gaaf checkpoint (it holds Python objects, not plain tensors and data); "
                        f"{_advice(path, resume)}") from None
    except Exception:  # truncated (RuntimeError, OSError EINVAL), not a torch file (KeyError, EOFError, ...)
        raise UserError(f"checkpoint {path} is damaged (truncated or not a PyTorch file); {_advice(path, resume)}") from None
    missing = _missing_entries(ckpt, _EVAL_KEYS + (_RESUME_KEYS if resume else ()))
    if missing:
        raise UserError(f"{path} is not a gaaf checkpoint (format {FORMAT}): {missing}; {_advice(path, resume)}")
    return ckpt


def _missing_entries(ckpt: Any, keys: tuple[str, ...]) -> str:
    """'' when `ckpt` is a format-FORMAT checkpoint dict with `keys`, else what is wrong, in a few words."""
    if not isinstance(ckpt, dict):
        return f"it holds a {type(ckpt).__name__}, not a dict"
    if "format" not in ckpt:
        return "it has no format entry"
    if ckpt["format"] != FORMAT:
        return f"its format is {ckpt['format']!r}"
    absent = [k for k in keys if k not in ckpt]
    if absent:
        return f"it has no {', '.join(absent)}"
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["epoch"], int):
        return "its config or epoch entry is malformed"
    return ""


def _advice(path: Path, resume: bool) -> str:
    """What to do about an unusable `path`: the run's other checkpoint when that one is readable."""
    other = path.with_name("best.pt" if path.name == "last.pt" else "last.pt")
    usable = path.name in ("last.pt", "best.pt") and other.is_file() and _loads(other)
    if resume:
        if usable and path.name == "last.pt":
            return (f"to go on from the best epoch, copy best.pt over last.pt in {path.parent} and --resume again; "
                    f"or start a fresh --out")
        return "start a fresh --out"
    return f"evaluate {other} instead, or retrain the run" if usable else "pass another checkpoint or retrain the run"


def _loads(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return not _missing_entries(torch.load(path, map_location="cpu", weights_only=True, mmap=True), _EVAL_KEYS)
    except Exception:  # damaged too
        return False


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """`name: saved → now` for every field that differs and may not change on resume. Both sides'
    activation fields are resolved first: a checkpoint written before they were recorded holds None
    for "the activation's default", which is the same run as the value it stands for."""
    saved, now = resolved_dict(saved), resolved_dict(cfg.to_dict())
    diffs = []
    for k in sorted(set(saved) | set(now)):
        if k in RESUME_MAY_CHANGE:
            continue
        if saved.get(k) != now.get(k):
            diffs.append(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}")
    return diffs


def check_resume_compatible(ckpt: dict[str, Any], cfg: TrainConfig, path: str | Path, *, finished_ok: bool = False) -> None:
    """Refuse to resume `ckpt` as `cfg`: another config, or nothing left to train (unless
    `finished_ok` and the checkpoint ends exactly at cfg.epochs or at its max_iterations: --resume
    auto on a finished run). max_iterations may not change: a run it cut short mid-epoch cannot be
    continued as if that epoch had been whole."""
    diffs = config_differences(ckpt["config"], cfg)
    if diffs:
        raise UserError(
            f"checkpoint {path} was written by another config ({'; '.join(diffs)}); "
            f"only {', '.join(sorted(RESUME_MAY_CHANGE))} may change on --resume"
        )
    iterations = ckpt.get("iterations")
    if cfg.max_iterations and iterations is not None and iterations >= cfg.max_iterations and ckpt["epoch"] <= cfg.epochs:
        if finished_ok:
            return
        raise UserError(f"checkpoint {path} already took its {cfg.max_iterations} iterations (max_iterations) in epoch "
                        f"{ckpt['epoch']}; nothing left to train")
    if ckpt["epoch"] > cfg.epochs or (ckpt["epoch"] == cfg.epochs and not finished_ok):
        raise UserError(
            f"checkpoint {path} already finished epoch {ckpt['epoch']} of {cfg.epochs}; "
            f"pass a larger --epochs to train further"
        )
