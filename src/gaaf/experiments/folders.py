"""The sweep folder layout, and reading the state of one run folder.

    OUT/
      study.json                  the resolved study: what `gaaf sweep` was asked to run
      configs/<run>/seed<k>.json  the resolved train config passed to `gaaf train --config`
      runs/<run>/seed<k>/         one `gaaf train --out` folder per run × seed (docs/DEVELOPING.md)
        config.json, metrics.csv, summary.json, last.pt, best.pt
        error.txt                 written by the sweep when the run failed (its stderr tail)
      report/                     `gaaf report` output (report.md, report.csv, *.png)

A run folder is in exactly one state: finished (summary.json says so), failed (error.txt and
not finished), interrupted (last.pt, so it can resume), or missing (nothing usable yet).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINISHED, FAILED, INTERRUPTED, MISSING = "finished", "failed", "interrupted", "missing"
STUDY_FILE = "study.json"


def run_dir(root: Path, name: str, seed: int) -> Path:
    return Path(root) / "runs" / name / f"seed{seed}"


def config_path(root: Path, name: str, seed: int) -> Path:
    return Path(root) / "configs" / name / f"seed{seed}.json"


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is absent or unreadable (a report never fails on one file)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_finished(folder: Path) -> bool:
    summary = read_json(Path(folder) / "summary.json")
    return isinstance(summary, dict) and summary.get("status") == FINISHED


def state(folder: Path) -> str:
    """finished | failed | interrupted | missing (see the module docstring)."""
    folder = Path(folder)
    if is_finished(folder):
        return FINISHED
    if (folder / "error.txt").is_file():
        return FAILED
    if (folder / "last.pt").is_file():
        return INTERRUPTED
    return MISSING


@dataclass
class RunResult:
    """What one run folder holds, for the report."""

    folder: Path
    state: str
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, float]]
    error: str = ""

    @property
    def final_acc(self) -> float | None:
        v = self.summary.get("final_test_acc") if self.state == FINISHED else None
        return float(v) if isinstance(v, (int, float)) else None


def read_run(folder: Path) -> RunResult:
    """Everything `gaaf report` needs from a run folder; missing files read as empty."""
    folder = Path(folder)
    raw = read_json(folder / "config.json")
    config = raw.get("config", raw) if isinstance(raw, dict) else {}
    summary = read_json(folder / "summary.json")
    error = ""
    if (folder / "error.txt").is_file():
        error = (folder / "error.txt").read_text(encoding="utf-8", errors="replace")
    return RunResult(folder, state(folder), config if isinstance(config, dict) else {},
                     summary if isinstance(summary, dict) else {}, read_metrics(folder), error)  # fmt: skip


def read_metrics(folder: Path) -> list[dict[str, float]]:
    """metrics.csv as a list of {column: float}; rows that do not parse are skipped."""
    path = Path(folder) / "metrics.csv"
    rows: list[dict[str, float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    rows.append({k: float(v) for k, v in row.items() if k is not None and v not in (None, "")})
                except ValueError:
                    continue
    except OSError:
        pass
    return rows


def epochs_done(folder: Path) -> int:
    """Finished epochs according to metrics.csv (0 when there is none)."""
    rows = read_metrics(folder)
    return int(max((r.get("epoch", 0) for r in rows), default=0))
