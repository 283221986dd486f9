"""The run folder (docs/DEVELOPING.md): config.json, metrics.csv, summary.json, last.pt, best.pt.

Every file is written whole and atomically with gaaf.io, so a reader (sweep, report) never sees
half a file and a killed run leaves the previous version of each.
"""
from __future__ import annotations

import io
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import UserError, plural
from ..io import atomic_write_json, atomic_write_text
from .config import TrainConfig

METRICS_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "images_per_second",
)
#: files whose presence means "this folder already holds a run"
RUN_FILES = ("config.json", "metrics.csv", "summary.json", "last.pt")


def default_out(cfg: TrainConfig) -> Path:
    model = cfg.model.replace(":", "-")  # a factory's pkg.module:factory: no colon in a folder name
    return Path("runs") / f"{model}-{cfg.activation}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def holds_run(out: Path, *, unstarted_ok: bool = False) -> bool:
    """Whether `out` holds (part of) a run. `unstarted_ok`: a lone config.json (a run stopped before
    its first checkpoint: nothing to continue, nothing to lose) does not count."""
    names = [n for n in RUN_FILES if not (unstarted_ok and n == "config.json")]
    return any((out / name).exists() for name in names)


def prepare_new_run(out: Path, *, unstarted_ok: bool = False) -> None:
    """Refuse a folder that already holds a run (nothing is overwritten) and one we cannot write.
    This is the one place that decides whether a new run may start in `out`."""
    if holds_run(out, unstarted_ok=unstarted_ok):
        raise UserError(f"--out {out} already holds a run; pass --resume to continue it or choose another --out")
    check_writable(out)


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UserError(f"cannot write to --out {out}: {e.strerror or e}") from None


def git_revision() -> str | None:
    """HEAD of the git checkout this package runs from, or None (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {plural(torch.get_num_threads(), 'thread')})"


def run_meta(device: torch.device, world_size: int, created: str | None = None) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta = {
        "gaaf_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_revision": git_revision(),
        "hostname": socket.gethostname(),
        "device": describe_device(device),
        "world_size": world_size,
        "created": created or now,
    }
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # torchrun's job id: a restarted worker knows its own run folder
        meta["torchelastic_run_id"] = os.environ["TORCHELASTIC_RUN_ID"]
    if created:
        meta["resumed"] = now
    return meta


def write_config(out: Path, cfg: TrainConfig, meta: dict[str, Any]) -> None:
    atomic_write_json(out / "config.json", {"config": cfg.to_dict(), "meta": meta})


def read_meta(out: Path) -> dict[str, Any]:
    """config.json's meta; {} when it is missing or damaged (see `config_json_problem`)."""
    try:
        meta = _read_config_json(out).get("meta", {})
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def config_json_problem(out: Path) -> str | None:
    """None when OUT/config.json is absent or a readable {"config": {...}, "meta": {...}}, else why not."""
    if not (out / "config.json").exists():
        return None
    try:
        data = _read_config_json(out)
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        return " ".join(str(e).split())[:120]
    if not isinstance(data.get("config"), dict) or not isinstance(data.get("meta", {}), dict):
        return "it has no config object"
    return None


def _read_config_json(out: Path) -> dict[str, Any]:
    import json

    data = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"it holds a JSON {type(data).__name__}, not an object")
    return data


def _fmt(column: str, v: Any) -> str:
    if column == "epoch":
        return str(int(v))
    if column == "epoch_seconds":
        return f"{v:.3f}"
    if column == "images_per_second":
        return f"{v:.1f}"
    return repr(float(v))  # losses, accuracies, lr: shortest exact round-trip form


def write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv whole (header + one row per finished epoch)."""
    buf = io.StringIO()
    buf.write(",".join(METRICS_COLUMNS) + "\n")
    for r in rows:
        buf.write(",".join(_fmt(c, r[c]) for c in METRICS_COLUMNS) + "\n")
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(out / "summary.json", summary)


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
